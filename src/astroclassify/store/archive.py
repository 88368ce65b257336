"""Archive items (an APOD day, an ESA/Hubble image) with their provenance, and ingest runs."""

from __future__ import annotations

import datetime as dt

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from astroclassify.store.tables import IngestedItem, IngestRun

__all__ = ["DONE", "IngestRuns", "IngestedItems", "as_utc", "now", "pack_fingerprint", "unpack_fingerprint"]

DONE = ("stored", "duplicate", "recorded")  # a re-run fetches none of these again


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def pack_fingerprint(thumb: np.ndarray, detail: np.ndarray) -> bytes:
    """float16 thumbnail + detail vectors (9 KB): enough precision for correlations ≥ 0.85."""
    return np.concatenate([thumb, detail]).astype(np.float16).tobytes()


def unpack_fingerprint(blob: bytes, thumb_len: int) -> tuple[np.ndarray, np.ndarray]:
    v = np.frombuffer(blob, dtype=np.float16).astype(np.float32)
    return v[:thumb_len], v[thumb_len:]


class IngestedItems:
    def __init__(self, session: Session) -> None:
        self.session = session

    def categorised(self) -> list[IngestedItem]:
        """Stored archive items that carry the archive's category (weak labels)."""
        q = select(IngestedItem).where(IngestedItem.category != "", IngestedItem.stored_name.is_not(None))
        return [i for i in self.session.scalars(q) if i.sha256]

    def by_key(self, key: str) -> IngestedItem | None:
        return self.session.scalar(select(IngestedItem).where(IngestedItem.key == key))

    def get(self, item_id: int) -> IngestedItem | None:
        return self.session.get(IngestedItem, item_id)

    def save(self, item: IngestedItem) -> IngestedItem:
        self.session.add(item)
        self.session.commit()
        return item

    def by_sha256(self, sha256: str) -> IngestedItem | None:
        """The archive item a file came from, if it was ingested (uploads of it then carry its credit)."""
        return self.session.scalar(
            select(IngestedItem).where(IngestedItem.sha256 == sha256, IngestedItem.status.in_(DONE)).limit(1)
        )

    def with_pixels(self) -> list[tuple[int, str | None, bytes | None]]:
        """(id, pixel hash, fingerprint) of every item whose pixels were kept: the dedupe index."""
        rows = self.session.execute(
            select(IngestedItem.id, IngestedItem.pixels_sha256, IngestedItem.fingerprint).where(
                IngestedItem.pixels_sha256.is_not(None)
            )
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def latest(self, limit: int = 24, source: str | None = None) -> list[IngestedItem]:
        q = select(IngestedItem).order_by(IngestedItem.id.desc()).limit(limit)
        if source:
            q = q.where(IngestedItem.source == source)
        return list(self.session.scalars(q))

    def select(
        self,
        *,
        source: str | None = None,
        statuses=("stored",),
        category: str | None = None,
        since: dt.date | None = None,
        until: dt.date | None = None,
    ) -> list[IngestedItem]:
        q = (
            select(IngestedItem)
            .options(selectinload(IngestedItem.classification))
            .where(IngestedItem.status.in_(statuses))
        )
        if source:
            q = q.where(IngestedItem.source == source)
        if category:
            q = q.where(IngestedItem.category == category)
        if since:
            q = q.where(IngestedItem.date >= since)
        if until:
            q = q.where(IngestedItem.date <= until)
        return list(self.session.scalars(q.order_by(IngestedItem.id)))

    def counts_by_source(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        rows = self.session.execute(
            select(IngestedItem.source, IngestedItem.status, func.count()).group_by(
                IngestedItem.source, IngestedItem.status
            )
        )
        for source, status, n in rows:
            out.setdefault(source, {})[status] = n
        return out

    def done_keys(self, source: str) -> set[str]:
        rows = self.session.scalars(
            select(IngestedItem.key).where(IngestedItem.source == source, IngestedItem.status.in_(DONE))
        )
        return set(rows)

    def oldest_failed_date(self, source: str) -> dt.date | None:
        return self.session.scalar(
            select(func.min(IngestedItem.date)).where(IngestedItem.source == source, IngestedItem.status == "failed")
        )

    def newest_date(self, source: str) -> dt.date | None:
        return self.session.scalar(
            select(func.max(IngestedItem.date)).where(IngestedItem.source == source, IngestedItem.status.in_(DONE))
        )


class IngestRuns:
    def __init__(self, session: Session) -> None:
        self.session = session

    def start(self, source: str, params: dict) -> IngestRun:
        run = IngestRun(source=source, started_at=now(), params=params, counts={})
        self.session.add(run)
        self.session.commit()
        return run

    def finish(self, run: IngestRun, counts: dict, status: str = "finished", error: str = "") -> IngestRun:
        run.counts = dict(counts)
        run.status = status
        run.error = error
        run.finished_at = now()
        self.session.commit()
        return run

    def recent(self, limit: int = 20) -> list[IngestRun]:
        return list(self.session.scalars(select(IngestRun).order_by(IngestRun.id.desc()).limit(limit)))

    def last_finished(self, source: str) -> IngestRun | None:
        return self.session.scalar(
            select(IngestRun)
            .where(IngestRun.source == source, IngestRun.status == "finished")
            .order_by(IngestRun.id.desc())
            .limit(1)
        )


def as_utc(t: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes; they were written in UTC."""
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)
