"""The stored collection as arrays: embeddings and what ranking needs of each record, and every mark.

Every request must cost the same at 100 records or 100,000: nothing reads or scores the whole
collection per request. Per detector, the embeddings, base scores, owners, labels and sources
are kept in arrays that only grow (records are never deleted), read incrementally; marks
likewise. Rows below ``n`` are never written again, so a snapshot (``ids[:n]``) taken by a
reader or a background job stays valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Codes", "Collection", "MarkLog", "positions"]


class Codes:
    """Small integer codes for repeated strings (owners, labels, sources), so filters are array compares."""

    def __init__(self) -> None:
        self.names: list[str | None] = []
        self._code: dict[str | None, int] = {}

    def code(self, name: str | None) -> int:
        if name not in self._code:
            self._code[name] = len(self.names)
            self.names.append(name)
        return self._code[name]

    def find(self, name: str | None) -> int:
        return self._code.get(name, -1)


@dataclass
class Collection:
    """Every stored embedding of one detector and what ranking needs of its record, grown in place."""

    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # ascending
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    base: np.ndarray = field(default_factory=lambda: np.zeros(0))  # anomaly scores
    owner: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    label: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    source: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    n: int = 0
    owners: Codes = field(default_factory=Codes)
    labels: Codes = field(default_factory=Codes)
    sources: Codes = field(default_factory=Codes)

    @property
    def newest(self) -> int:
        return int(self.ids[self.n - 1]) if self.n else 0

    def append(self, rows: Sequence[tuple]) -> None:
        """Add rows (id, vector bytes, anomaly score, owner, label, source) newer than the newest.

        Arrays grow by doubling, and rows below ``n`` are never written again.
        """
        rows = [r for r in rows if r[0] > self.newest]
        if not rows:
            return
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float16).reshape(len(rows), -1)
        need = self.n + len(rows)
        if need > len(self.ids):
            size = max(need, 2 * len(self.ids), 1024)
            grown = Collection(
                np.zeros(size, dtype=np.int64),
                np.zeros((size, vectors.shape[1]), dtype=np.float32),
                np.zeros(size),
                np.zeros(size, dtype=np.int32),
                np.zeros(size, dtype=np.int32),
                np.zeros(size, dtype=np.int32),
            )
            for name in ("ids", "matrix", "base", "owner", "label", "source"):
                if self.n:
                    getattr(grown, name)[: self.n] = getattr(self, name)[: self.n]
                setattr(self, name, getattr(grown, name))
        new = slice(self.n, need)
        self.ids[new] = [r[0] for r in rows]
        self.matrix[new] = vectors
        self.base[new] = [r[2] or 0.0 for r in rows]
        self.owner[new] = [self.owners.code(r[3]) for r in rows]
        self.label[new] = [self.labels.code(r[4]) for r in rows]
        self.source[new] = [self.sources.code(r[5] or "upload") for r in rows]
        self.n = need

    def scope(self, owner: str | None) -> np.ndarray:
        """Row numbers ``owner`` may see: all of them for local use (no keys), else the key's own."""
        if owner is None:
            return np.arange(self.n)
        return np.flatnonzero(self.owner[: self.n] == self.owners.find(owner))

    def rows_of(self, owner: str | None, n: int) -> np.ndarray:
        """``owner``'s rows among the first ``n``."""
        every = self.scope(owner)
        return every[: np.searchsorted(every, n)]


@dataclass
class MarkLog:
    """Every mark, in the order made (oldest first), grown in place like ``Collection``."""

    ids: list[int] = field(default_factory=list)
    record: list[int] = field(default_factory=list)
    owner: list[str | None] = field(default_factory=list)
    interesting: list[bool] = field(default_factory=list)

    @property
    def newest(self) -> int:
        return self.ids[-1] if self.ids else 0

    def append(self, rows: Sequence[tuple]) -> None:
        """Add marks (id, record id, owner, interesting) newer than the newest."""
        for mid, cid, who, value in rows:
            if mid > self.newest:
                self.ids.append(mid)
                self.record.append(cid)
                self.owner.append(who)
                self.interesting.append(bool(value))

    def latest(self, owner: str | None) -> tuple[dict[int, bool], int]:
        """Each record's newest mark by ``owner`` (by anyone for local use), and the newest mark's id."""
        out: dict[int, bool] = {}
        newest = 0
        for mid, cid, who, value in zip(self.ids, self.record, self.owner, self.interesting, strict=True):
            if owner is None or who == owner:
                out[cid] = value  # later marks overwrite earlier ones
                newest = mid
        return out, newest


def positions(sorted_ids: np.ndarray, marks: dict[int, bool]) -> dict[int, bool]:
    """Marks keyed by position in ``sorted_ids`` (marks of records not among them dropped)."""
    wanted = np.fromiter(marks, dtype=np.int64, count=len(marks))
    at = np.searchsorted(sorted_ids, wanted)
    ok = at < len(sorted_ids)
    ok[ok] = sorted_ids[at[ok]] == wanted[ok]
    values = list(marks.values())
    return {int(at[i]): values[i] for i in np.flatnonzero(ok)}
