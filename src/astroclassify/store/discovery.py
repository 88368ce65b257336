"""What discovery reads of the store: embeddings with their records' fields, marks, pages of records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session, selectinload

from astroclassify.store.tables import Classification, Embedding, IngestedItem, Mark

__all__ = ["DiscoveryRows", "IN_CHUNK"]

IN_CHUNK = 500  # ids per IN (...) query: SQLite's variable limit is far above, a page's ids are below


class DiscoveryRows:
    def __init__(self, session: Session) -> None:
        self.session = session

    def embeddings_after(self, detector: str, newest: int) -> Sequence[Any]:
        """Embeddings stored after record ``newest``, with what ranking needs of their records, oldest first.

        Rows of (classification_id, vector, anomaly_score, owner, label, source).
        """
        return self.session.execute(self.embeddings_query(detector, newest)).all()

    @staticmethod
    def embeddings_query(detector: str, newest: int) -> Select[int, bytes, float | None, str | None, str, str]:
        """The query behind ``embeddings_after``. The join to the archive item (for its source) goes
        through the index of migration 0004: without it SQLite scanned every archive item once per
        embedding (79 s for 100k x 10k)."""
        return (
            select(
                Embedding.classification_id,
                Embedding.vector,
                Classification.anomaly_score,
                Classification.owner,
                Classification.label,
                IngestedItem.source,
            )
            .join(Classification, Classification.id == Embedding.classification_id)
            .outerjoin(IngestedItem, IngestedItem.classification_id == Embedding.classification_id)
            .where(Embedding.detector == detector, Embedding.classification_id > newest)
            .order_by(Embedding.classification_id)
        )

    def embedding(self, record_id: int) -> Embedding | None:
        return self.session.get(Embedding, record_id)

    def marks_after(self, newest: int) -> Sequence[Any]:
        """Marks made after mark ``newest``: (id, classification_id, owner, interesting), oldest first."""
        q = select(Mark.id, Mark.classification_id, Mark.owner, Mark.interesting).where(Mark.id > newest)
        return self.session.execute(q.order_by(Mark.id)).all()

    def records(self, ids: Sequence[int]) -> dict[int, Classification]:
        """The records of a page's ids, ``IN_CHUNK`` ids a query."""
        ids = list(ids)
        out = {}
        for start in range(0, len(ids), IN_CHUNK):
            chunk = ids[start : start + IN_CHUNK]
            out.update(
                {
                    r.id: r
                    for r in self.session.scalars(
                        select(Classification)
                        .where(Classification.id.in_(chunk))
                        .options(selectinload(Classification.feedback))  # corrections shown beside each
                    )
                }
            )
        return out

    def latest_marks(self, ids: Sequence[int], owner: str | None) -> dict[int, bool]:
        """The newest mark of each of a page's records, by ``owner`` (by anyone for local use)."""
        ids = list(ids)
        out = {}
        for start in range(0, len(ids), IN_CHUNK):
            where: list[ColumnElement[bool]] = [Mark.classification_id.in_(ids[start : start + IN_CHUNK])]
            if owner is not None:
                where.append(Mark.owner == owner)
            newest = select(func.max(Mark.id)).where(*where).group_by(Mark.classification_id)
            query = select(Mark.classification_id, Mark.interesting).where(Mark.id.in_(newest))
            out.update({cid: bool(v) for cid, v in self.session.execute(query).all()})
        return out

    def marked(self, owner: str | None) -> Sequence[Any]:
        """Each marked record with its newest mark (by ``owner``, or anyone's), as (Mark, Classification) rows."""
        mine = [Mark.owner == owner] if owner is not None else []
        newest = select(func.max(Mark.id)).where(*mine).group_by(Mark.classification_id)
        q = (
            select(Mark, Classification)
            .join(Classification, Classification.id == Mark.classification_id)
            .where(Mark.id.in_(newest))
            .order_by(Classification.id)
        )
        return self.session.execute(q).all()
