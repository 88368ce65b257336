"""Stored classifications: one record per classified image, with its corrections."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from astroclassify.errors import IdempotencyKeyReusedError, RecordNotFoundError, StoreError
from astroclassify.store.tables import (
    Classification,
    Contribution,
    Embedding,
    Feedback,
    IdempotencyKey,
    IngestedItem,
    Mark,
)

__all__ = [
    "Answer",
    "ClassificationQuery",
    "Classifications",
    "new_classification",
    "record_classification",
    "stored_names",
]

# Loaded with every record: API views show corrections, marks and whether look-alikes exist.
_LOADED = (
    selectinload(Classification.feedback),
    selectinload(Classification.marks),
    selectinload(Classification.embedding).load_only(Embedding.detector),
)

SORTS: dict[str, Any] = {
    "newest": Classification.id.desc(),
    "oldest": Classification.id.asc(),
    "confidence": Classification.confidence.desc(),
    "least_confident": Classification.confidence.asc(),
    "most_unusual": Classification.anomaly_score.desc(),
}


@dataclass(frozen=True)
class ClassificationQuery:
    label: str | None = None
    min_confidence: float = 0.0
    max_confidence: float = 1.0
    owner: str | None = None
    unusual: bool | None = None  # True: only images flagged unusual
    sort: str = "newest"
    page: int = 1
    per_page: int = 24


@dataclass(frozen=True)
class Answer:
    """A model's answer for one image, as it is stored."""

    labels: tuple[str, ...]
    probabilities: Sequence[float]
    model_name: str
    model_version: str
    tta: str | None
    anomaly_score: float | None = None
    unusual: bool | None = None
    embedding: bytes | None = None  # compact embedding, float16 bytes
    detector: str | None = None  # the id of the projection the embedding is in
    tags: dict[str, float] | None = None  # soft and multi-label outputs, for a model with tag heads


def new_classification(
    *, filename: str, stored_name: str, sha256: str, image_format: str, answer: Answer, owner: str | None = None
) -> Classification:
    """A Classification row for one stored image and a model's answer (not yet added)."""
    probabilities = [float(p) for p in answer.probabilities]
    best = max(range(len(probabilities)), key=probabilities.__getitem__)
    return Classification(
        filename=filename[:255],
        stored_name=stored_name,
        sha256=sha256,
        image_format=image_format,
        label=answer.labels[best],
        confidence=probabilities[best],
        probabilities=dict(zip(answer.labels, probabilities, strict=True)),
        model_name=answer.model_name,
        model_version=answer.model_version,
        owner=owner,
        tta=answer.tta,
        anomaly_score=answer.anomaly_score,
        unusual=answer.unusual,
        tags={k: round(float(v), 4) for k, v in answer.tags.items()} if answer.tags else None,
        embedding=Embedding(detector=answer.detector, vector=answer.embedding)
        if answer.embedding is not None and answer.detector
        else None,
        # A new record has neither: known empty, so presenting it does not query for them.
        feedback=[],
        marks=[],
    )


def record_classification(
    session: Session,
    *,
    filename: str,
    stored_name: str,
    sha256: str,
    image_format: str,
    answer: Answer,
    owner: str | None = None,
    idempotency_key: str | None = None,
) -> tuple[Classification, bool]:
    """Store a model's answer for an image already in the image store; returns (record, created).

    The one way records are made: web uploads and ingestion both come here. ``created`` is
    False when another request with the same ``idempotency_key`` won a race; the caller then
    removes its own copy of the file.
    """
    row = new_classification(
        filename=filename, stored_name=stored_name, sha256=sha256, image_format=image_format, answer=answer, owner=owner
    )
    return Classifications(session).record(row, idempotency_key=idempotency_key)


def stored_names(session: Session) -> set[str]:
    """Every file name the image store holds on behalf of a record (uploads, ingested images, contributions)."""
    names = set(session.scalars(select(Classification.stored_name)))
    names |= set(session.scalars(select(IngestedItem.stored_name).where(IngestedItem.stored_name.is_not(None))))
    names |= set(session.scalars(select(Contribution.stored_name)))
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
            select(Classification).options(*_LOADED).where(*same).order_by(Classification.id).limit(1)
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

    def count_with_embeddings(self, model_name: str) -> int:
        """Stored images a model's detector scored (what the anomaly ranking and map can show)."""
        query = (
            select(func.count())
            .select_from(Classification)
            .join(Embedding)
            .where(Classification.model_name == model_name)
        )
        return int(self.session.scalar(query) or 0)

    def get(self, record_id: int, *, owner: str | None = None) -> Classification:
        record = self.session.scalar(select(Classification).options(*_LOADED).where(Classification.id == record_id))
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
        if q.unusual is not None:
            where.append(Classification.unusual.is_(q.unusual))
        total = self.session.scalar(select(func.count()).select_from(Classification).where(*where)) or 0
        rows = self.session.scalars(
            select(Classification)
            .options(*_LOADED)
            .where(*where)
            .order_by(SORTS[q.sort])
            .limit(q.per_page)
            .offset((max(q.page, 1) - 1) * q.per_page)
        ).all()
        return list(rows), int(total)

    def corrected(self) -> list[Classification]:
        """Records a person corrected, each with its corrections loaded (the newest last)."""
        q = select(Classification).where(Classification.feedback.any()).options(selectinload(Classification.feedback))
        return [c for c in self.session.scalars(q) if c.feedback]

    def add_feedback(self, record_id: int, label: str, comment: str = "", *, owner: str | None = None) -> Feedback:
        record = self.get(record_id, owner=owner)
        item = Feedback(classification_id=record.id, label=label.strip(), comment=comment)
        if not item.label:
            raise StoreError("feedback needs a non-empty label")
        self.session.add(item)
        self.session.commit()
        return item

    def add_mark(self, record_id: int, interesting: bool, *, owner: str | None = None) -> Mark:
        """A person's verdict on a record (kept with who and when; the newest one counts)."""
        record = self.get(record_id, owner=owner)
        mark = Mark(classification_id=record.id, interesting=bool(interesting), owner=owner)
        self.session.add(mark)
        self.session.commit()
        return mark
