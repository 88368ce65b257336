"""Repositories: the operations the app needs, as plain methods over a Session."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from astroclassify.errors import StoreError
from astroclassify.store.tables import Classification, Feedback

__all__ = ["ClassificationQuery", "Classifications"]

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
            raise StoreError(f"classification {record_id} not found")
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
