"""Repositories: the operations the app needs, as plain methods over a Session."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from astroclassify.errors import IdempotencyKeyReusedError, RecordNotFoundError, StoreError
from astroclassify.store.tables import ApiKey, Classification, Feedback, IdempotencyKey, IngestedItem

__all__ = ["ApiKeys", "ClassificationQuery", "Classifications", "new_classification", "stored_names"]

SORTS = {
    "newest": Classification.id.desc(),
    "oldest": Classification.id.asc(),
    "confidence": Classification.confidence.desc(),
    "least_confident": Classification.confidence.asc(),
}


@dataclass(frozen=True)
class ClassificationQuery:
    label: str | None = None
    min_confidence: float = 0.0
    max_confidence: float = 1.0
    owner: str | None = None
    sort: str = "newest"
    page: int = 1
    per_page: int = 24


def new_classification(
    *,
    filename: str,
    stored_name: str,
    data: bytes,
    image_format: str,
    labels: tuple[str, ...],
    probabilities,
    model_name: str,
    model_version: str,
    owner: str | None = None,
    tta: str | None = None,
    sha256: str | None = None,
) -> Classification:
    """A Classification row for one stored image and the model's probabilities (not yet added)."""
    best = int(probabilities.argmax())
    return Classification(
        filename=filename[:255],
        stored_name=stored_name,
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        image_format=image_format,
        label=labels[best],
        confidence=float(probabilities[best]),
        probabilities={label: float(p) for label, p in zip(labels, probabilities, strict=True)},
        model_name=model_name,
        model_version=model_version,
        owner=owner,
        tta=tta,
    )


def stored_names(session: Session) -> set[str]:
    """Every file name the image store holds on behalf of a record (uploads and ingested images)."""
    names = set(session.scalars(select(Classification.stored_name)))
    names |= set(session.scalars(select(IngestedItem.stored_name).where(IngestedItem.stored_name.is_not(None))))
    return names


class Classifications:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, record: Classification) -> Classification:
        self.session.add(record)
        self.session.commit()
        return record

    def earlier_answer(
        self,
        sha256: str,
        *,
        owner: str | None,
        model_name: str,
        model_version: str,
        tta: str,
        idempotency_key: str | None = None,
    ) -> Classification | None:
        """The record an upload repeats, if any: by its ``Idempotency-Key``, else by its bytes.

        The same bytes answered by the same model version with the same TTA get the same
        answer, so the first record is returned rather than a copy made. A key that comes back
        with other bytes is refused: it names a different request.
        """
        if idempotency_key:
            known = self.session.scalar(
                select(IdempotencyKey).where(
                    IdempotencyKey.owner == (owner or ""), IdempotencyKey.key == idempotency_key
                )
            )
            if known is not None:
                if known.sha256 != sha256:
                    raise IdempotencyKeyReusedError(
                        f"Idempotency-Key {idempotency_key!r} was first sent with a different file; use a new key"
                    )
                return self.get(known.classification_id)
        same = [
            Classification.sha256 == sha256,
            Classification.model_name == model_name,
            Classification.model_version == model_version,
            Classification.tta == tta,
            Classification.owner.is_(None) if owner is None else Classification.owner == owner,
        ]
        return self.session.scalar(
            select(Classification)
            .options(selectinload(Classification.feedback))
            .where(*same)
            .order_by(Classification.id)
            .limit(1)
        )

    def record(self, row: Classification, *, idempotency_key: str | None = None) -> tuple[Classification, bool]:
        """Add ``row`` (and its idempotency key) in one transaction; returns (record, created).

        Two requests racing with one key: the loser's row is rolled back and the winner's
        record returned (``created`` False), so the caller can remove the loser's file.
        """
        self.session.add(row)
        if idempotency_key:
            self.session.flush()
            self.session.add(
                IdempotencyKey(owner=row.owner or "", key=idempotency_key, sha256=row.sha256, classification_id=row.id)
            )
        try:
            self.session.commit()
        except IntegrityError:
            self.session.rollback()
            winner = self.earlier_answer(
                row.sha256,
                owner=row.owner,
                model_name=row.model_name,
                model_version=row.model_version,
                tta=row.tta or "",
                idempotency_key=idempotency_key,
            )
            if winner is None:
                raise
            return winner, False
        return row, True

    def get(self, record_id: int, *, owner: str | None = None) -> Classification:
        record = self.session.scalar(
            select(Classification).options(selectinload(Classification.feedback)).where(Classification.id == record_id)
        )
        if record is None or (owner is not None and record.owner != owner):
            raise RecordNotFoundError(f"classification {record_id} not found")
        return record

    def search(self, q: ClassificationQuery) -> tuple[list[Classification], int]:
        if q.sort not in SORTS:
            raise StoreError(f"unknown sort {q.sort!r}; choose from {', '.join(SORTS)}")
        where = [Classification.confidence >= q.min_confidence, Classification.confidence <= q.max_confidence]
        if q.label:
            where.append(Classification.label == q.label)
        if q.owner is not None:
            where.append(Classification.owner == q.owner)
        total = self.session.scalar(select(func.count()).select_from(Classification).where(*where)) or 0
        rows = self.session.scalars(
            select(Classification)
            .options(selectinload(Classification.feedback))
            .where(*where)
            .order_by(SORTS[q.sort])
            .limit(q.per_page)
            .offset((max(q.page, 1) - 1) * q.per_page)
        ).all()
        return list(rows), int(total)

    def add_feedback(self, record_id: int, label: str, comment: str = "", *, owner: str | None = None) -> Feedback:
        record = self.get(record_id, owner=owner)
        item = Feedback(classification_id=record.id, label=label.strip(), comment=comment)
        if not item.label:
            raise StoreError("feedback needs a non-empty label")
        self.session.add(item)
        self.session.commit()
        return item


class ApiKeys:
    """Create, verify and revoke API keys of the form ``ac_<prefix>_<secret>``.

    Keys are 256-bit random secrets, so a plain SHA-256 is enough to store them (a slow
    password hash protects guessable passwords, which these are not); lookup goes by the
    public prefix and comparison is constant-time.
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    def create(self, name: str) -> tuple[ApiKey, str]:
        if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,64}", name):
            raise StoreError(f"key name {name!r} must be 1-64 letters, digits or _.@-")
        if self._active(name) is not None:
            raise StoreError(f"a key named {name!r} is in use; revoke it first or choose another name")
        prefix, secret = secrets.token_hex(4), secrets.token_urlsafe(32)
        key = f"ac_{prefix}_{secret}"
        record = ApiKey(name=name, prefix=prefix, key_hash=hashlib.sha256(key.encode()).hexdigest())
        self.session.add(record)
        self.session.commit()
        return record, key

    def verify(self, key: str) -> ApiKey | None:
        parts = key.split("_", 2)
        if len(parts) != 3 or parts[0] != "ac":
            return None
        digest = hashlib.sha256(key.encode()).hexdigest()
        for record in self.session.scalars(
            select(ApiKey).where(ApiKey.prefix == parts[1], ApiKey.revoked_at.is_(None))
        ):
            if hmac.compare_digest(record.key_hash, digest):
                return record
        return None

    def revoke(self, name: str) -> ApiKey:
        record = self._active(name)
        if record is None:
            if self.session.scalar(select(ApiKey).where(ApiKey.name == name).limit(1)) is not None:
                raise RecordNotFoundError(f"API key {name!r} is already revoked")
            raise RecordNotFoundError(f"API key {name!r} not found")
        record.revoked_at = dt.datetime.now(dt.UTC)
        self.session.commit()
        return record

    def _active(self, name: str) -> ApiKey | None:
        return self.session.scalar(select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None)))

    def all(self) -> list[ApiKey]:
        return list(self.session.scalars(select(ApiKey).order_by(ApiKey.id)))
