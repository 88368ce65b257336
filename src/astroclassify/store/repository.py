"""Repositories: the operations the app needs, as plain methods over a Session."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from astroclassify.errors import RecordNotFoundError, StoreError
from astroclassify.store.tables import ApiKey, Classification, Feedback

__all__ = ["ApiKeys", "ClassificationQuery", "Classifications", "new_classification"]

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
) -> Classification:
    """A Classification row for one stored image and the model's probabilities (not yet added)."""
    best = int(probabilities.argmax())
    return Classification(
        filename=filename[:255],
        stored_name=stored_name,
        sha256=hashlib.sha256(data).hexdigest(),
        image_format=image_format,
        label=labels[best],
        confidence=float(probabilities[best]),
        probabilities={label: float(p) for label, p in zip(labels, probabilities, strict=True)},
        model_name=model_name,
        model_version=model_version,
        owner=owner,
    )


class Classifications:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, record: Classification) -> Classification:
        self.session.add(record)
        self.session.commit()
        return record

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
        if self.session.scalar(select(ApiKey).where(ApiKey.name == name)) is not None:
            raise StoreError(f"a key named {name!r} already exists; revoke it or choose another name")
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
        record = self.session.scalar(select(ApiKey).where(ApiKey.name == name))
        if record is None:
            raise RecordNotFoundError(f"API key {name!r} not found")
        if record.revoked_at is None:
            record.revoked_at = dt.datetime.now(dt.UTC)
            self.session.commit()
        return record

    def all(self) -> list[ApiKey]:
        return list(self.session.scalars(select(ApiKey).order_by(ApiKey.id)))
