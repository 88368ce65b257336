"""Nearest neighbours among stored compact embeddings: exact where that is fast, HNSW beyond.

Exact search is one matrix-vector product: 100,000 images of 65 numbers take about 3 ms, so
it is used up to ``EXACT_LIMIT`` vectors. Past that an HNSW graph (hnswlib; chosen against
FAISS and USearch in ``bench/similarity.py``) answers in well under a millisecond at recall@10
above 0.95; it is built once per set of vectors and kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["EXACT_LIMIT", "VectorIndex"]

EXACT_LIMIT = 200_000
BLOCK_VALUES = 1_000_000  # distances held at once: queries are searched in blocks (4 MB of float32)


@dataclass
class VectorIndex:
    """Squared-Euclidean nearest neighbours over (n, d) vectors, returned by row number."""

    vectors: np.ndarray
    exact: bool = True
    _graph: object | None = None
    _norms: np.ndarray | None = None

    @classmethod
    def build(cls, vectors: np.ndarray, *, exact: bool | None = None) -> VectorIndex:
        """``exact``: None chooses by size (exact up to ``EXACT_LIMIT`` vectors)."""
        v = np.ascontiguousarray(vectors, dtype=np.float32)
        use_exact = len(v) <= EXACT_LIMIT if exact is None else exact
        index = cls(v, use_exact, _norms=(v * v).sum(1))
        if not use_exact:
            index._graph = _hnsw(v)
        return index

    def __len__(self) -> int:
        return len(self.vectors)

    def extend(self, vectors: np.ndarray) -> VectorIndex:
        """An index of these vectors and ``vectors`` after them (row numbers continue).

        An HNSW graph grows in place (no rebuild); an exact index copies. Crossing
        ``EXACT_LIMIT`` builds the graph once.
        """
        more = np.ascontiguousarray(vectors, dtype=np.float32)
        if not len(more):
            return self
        if not len(self.vectors):
            return VectorIndex.build(more, exact=self.exact or None)
        every = np.vstack([self.vectors, more])
        if self.exact or self._graph is None:
            return VectorIndex.build(every, exact=True if self.exact and len(every) <= EXACT_LIMIT else None)
        graph = self._graph
        graph.resize_index(len(every))  # type: ignore[attr-defined]
        graph.add_items(more, np.arange(len(self.vectors), len(every)), num_threads=1)  # type: ignore[attr-defined]
        return VectorIndex(every, False, graph, (every * every).sum(1))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, squared distances), each (q, k), nearest first; k is capped at the index size."""
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        k = min(k, len(self.vectors))
        if k == 0:
            return np.zeros((len(q), 0), dtype=np.int64), np.zeros((len(q), 0), dtype=np.float32)
        if not self.exact and self._graph is not None:
            graph = self._graph
            graph.set_ef(max(128, 2 * k))  # type: ignore[attr-defined]
            rows, dist = graph.knn_query(q, k=k)  # type: ignore[attr-defined]
            return rows.astype(np.int64), dist.astype(np.float32)
        v = self.vectors
        norms = self._norms if self._norms is not None else (v * v).sum(1)
        rows = np.empty((len(q), k), dtype=np.int64)
        dist = np.empty((len(q), k), dtype=np.float32)
        step = max(1, BLOCK_VALUES // len(v))
        for start in range(0, len(q), step):
            block = q[start : start + step]
            d2 = block @ v.T  # in place from here: one (block, n) buffer per block
            d2 *= -2
            d2 += norms[None]
            d2 += (block * block).sum(1)[:, None]
            part = np.argpartition(d2, k - 1, axis=1)[:, :k]
            order = np.take_along_axis(d2, part, axis=1).argsort(axis=1)
            found = np.take_along_axis(part, order, axis=1)
            rows[start : start + step] = found
            dist[start : start + step] = np.maximum(np.take_along_axis(d2, found, axis=1), 0)
        return rows, dist


def _hnsw(vectors: np.ndarray):
    import hnswlib

    graph = hnswlib.Index(space="l2", dim=vectors.shape[1])
    graph.init_index(max_elements=len(vectors), ef_construction=100, M=16, random_seed=0)
    # One thread: graphs are built behind a serving process, which needs its other cores.
    graph.add_items(vectors, np.arange(len(vectors)), num_threads=1)
    return graph
