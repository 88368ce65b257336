"""Look-alikes: the stored images nearest to one, within what the asker may see."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from astroclassify.discovery.arrays import Collection
from astroclassify.discovery.similarity import VectorIndex
from astroclassify.errors import NoEmbeddingError, StoreError
from astroclassify.inference.predictor import OnnxPredictor
from astroclassify.store import Session
from astroclassify.store.classifications import Classifications
from astroclassify.store.discovery import DiscoveryRows

if TYPE_CHECKING:
    from astroclassify.discovery.collection import Discovery

__all__ = ["GRAPH_FROM", "Neighbour", "ScopeIndex", "SimilarResult", "page_neighbours", "scope_index", "similar"]

# Past this many images a scope's look-alikes come from an HNSW graph (hnswlib), built once in
# the background and then grown in place; exact search answers meanwhile. A page of 50
# images with their look-alikes costs about 30 ms exact at 100k images, well under 1 ms on
# the graph, whose recall@10 is 1.0 there (bench/similarity.py).
GRAPH_FROM = 20_000


@dataclass(frozen=True)
class Neighbour:
    id: int
    filename: str
    label: str
    confidence: float
    anomaly_score: float | None
    interesting: bool | None
    distance: float
    corrected: str | None = None  # the newest correction a person made, which outranks the model's label

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SimilarResult:
    """Stored look-alikes of one image, nearest first."""

    query: str
    detector: str
    hits: list[Neighbour]

    def to_dict(self) -> dict:
        return {"query": self.query, "detector": self.detector, "hits": [h.to_dict() for h in self.hits]}


@dataclass
class ScopeIndex:
    """Look-alike search over one owner's rows of a collection (the whole of it for local use)."""

    n: int  # collection size it covers
    rows: np.ndarray  # collection row numbers
    index: VectorIndex


def scope_index(d: Discovery, detector: str, coll: Collection, n: int, owner: str | None) -> ScopeIndex:
    """The search index of ``owner``'s rows, extended with rows stored since it was built.

    Filtering inside the search (not after it) is what makes ``k`` results come back
    whenever ``k`` exist, however many records other keys hold.
    """
    key = (detector, owner)
    with d.lock:
        known = d.indexes.get(key)
    if known is None or known.n > n:
        rows = coll.rows_of(owner, n)
        built = ScopeIndex(n, rows, VectorIndex.build(coll.matrix[rows], exact=True))
    elif known.n < n:
        every = np.arange(known.n, n)
        fresh = every if owner is None else every[coll.owner[known.n : n] == coll.owners.find(owner)]
        built = ScopeIndex(n, np.r_[known.rows, fresh], known.index.extend(coll.matrix[fresh]))
    else:
        built = known
    if built is not known:
        with d.lock:
            current = d.indexes.get(key)
            if current is None or current.n <= built.n:
                d.indexes[key] = built
    if built.index.exact and len(built.rows) >= d.graph_from:

        def job(rows: np.ndarray = built.rows, n: int = built.n) -> None:
            graph = ScopeIndex(n, rows, VectorIndex.build(coll.matrix[rows], exact=False))
            while True:  # images stored while the graph was built join it before it is used
                with d.lock:
                    current = d.indexes.get(key)
                    if current is None or current.n <= graph.n:
                        d.indexes[key] = graph
                        return
                extra = current.rows[len(graph.rows) :]
                graph = ScopeIndex(current.n, current.rows, graph.index.extend(coll.matrix[extra]))

        d.jobs.submit((*key, "graph"), job)
    return built


def similar(
    d: Discovery, query: int | str | Path | bytes, predictor: OnnxPredictor, *, k: int, owner: str | None
) -> SimilarResult:
    """The ``k`` stored images most like ``query`` (see ``Discovery.similar``)."""
    record_id = _record_id(query)
    with d.store.session() as session:
        if record_id is not None:
            Classifications(session).get(record_id, owner=owner)  # 404 for another key's record
            row = DiscoveryRows(session).embedding(record_id)
            if row is None:
                raise NoEmbeddingError(
                    f"classification {record_id} has no stored embedding (it was classified without an anomaly detector)"
                )
            detector, vector, label = row.detector, np.frombuffer(row.vector, dtype=np.float16), f"#{record_id}"
        else:
            detector = d.detector_id(predictor)
            outcome = next(iter(predictor.run([query])))  # type: ignore[list-item]
            if outcome.error is not None or outcome.embedding is None:
                raise StoreError(f"{outcome.source}: {outcome.error or 'no embedding'}")
            vector, label = outcome.embedding, str(query) if not isinstance(query, bytes) else "<bytes>"
        coll, n = d.collection(session, detector)
        scope = scope_index(d, detector, coll, n, owner)
        rows, d2 = scope.index.search(np.asarray(vector, dtype=np.float32)[None], k + 1)
        ids = [int(coll.ids[scope.rows[r]]) for r in rows[0]]
        hits = neighbours(session, ids, np.sqrt(d2[0]), exclude=record_id, owner=owner)[:k]
    return SimilarResult(label, detector, hits)


def _record_id(query: int | str | Path | bytes) -> int | None:
    if isinstance(query, int):
        return query
    if isinstance(query, str) and query.startswith("#") and query[1:].isdigit():
        return int(query[1:])
    return None


def neighbours(
    session: Session, ids: Sequence[int], distances: np.ndarray, *, exclude: int | None, owner: str | None
) -> list[Neighbour]:
    """Records for a handful of ids (a page's worth: the IN list is short by construction)."""
    records = DiscoveryRows(session).records(ids)
    marks = DiscoveryRows(session).latest_marks(ids, owner)
    out = []
    for i, dist in zip(ids, distances, strict=True):
        r = records.get(i)
        if r is None or i == exclude or (owner is not None and r.owner != owner):
            continue
        corrected = r.feedback[-1].label if r.feedback else None
        out.append(
            Neighbour(
                i, r.filename, r.label, r.confidence, r.anomaly_score, marks.get(i), round(float(dist), 4), corrected
            )
        )
    return out


def page_neighbours(
    d: Discovery,
    session: Session,
    detector: str,
    coll: Collection,
    n: int,
    owner: str | None,
    rows: np.ndarray,
    ids: list[int],
    k: int,
) -> dict[int, list[Neighbour]]:
    """Look-alikes of a page of images, searched together (one matrix product) within the scope."""
    if not k or not ids:
        return {}
    scope = scope_index(d, detector, coll, n, owner)
    found, d2 = scope.index.search(coll.matrix[rows], k + 1)
    hit_ids = [[int(coll.ids[scope.rows[j]]) for j in row] for row in found]
    flat = sorted({i for row in hit_ids for i in row})
    every = {nb.id: nb for nb in neighbours(session, flat, np.zeros(len(flat)), exclude=None, owner=owner)}
    out = {}
    for cid, row, dist in zip(ids, hit_ids, np.sqrt(d2), strict=True):
        out[cid] = [
            dataclasses.replace(every[j], distance=round(float(x), 4))
            for j, x in zip(row, dist, strict=True)
            if j != cid and j in every
        ][:k]
    return out
