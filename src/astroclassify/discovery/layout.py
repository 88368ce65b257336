"""A 2-D map of embeddings: t-SNE on a sample, the rest placed among their neighbours.

scikit-learn's t-SNE takes about 10 s for 2,000 images on two cores and grows faster than
linearly, so at most ``LAYOUT_POINTS`` images are laid out by it; every other image goes to
the distance-weighted mean position of its nearest laid-out neighbours (fast, and it lands
inside the cluster it belongs to). A layout is reused while the set grows by less than a
fifth; see ``discovery/collection.py``.
"""

from __future__ import annotations

import numpy as np

from astroclassify.discovery.similarity import VectorIndex

__all__ = ["LAYOUT_POINTS", "layout", "place"]

LAYOUT_POINTS = 2000


def layout(vectors: np.ndarray, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rows laid out by t-SNE, (n, 2) positions for every row), positions scaled to [0, 1]."""
    from sklearn.manifold import TSNE

    v = np.asarray(vectors, dtype=np.float32)
    n = len(v)
    if n < 2 or float(np.ptp(v, axis=0).max()) < 1e-6:  # one image, or all alike: nothing to lay out
        return np.arange(n), np.full((n, 2), 0.5)
    if n < 4:  # too few for t-SNE: their two principal axes, in the middle half of the map
        centred = v - v.mean(axis=0)
        axes = np.linalg.svd(centred, full_matrices=False)[2][:2]
        xy = np.zeros((n, 2))
        xy[:, : len(axes)] = centred @ axes.T
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        return np.arange(n), 0.25 + 0.5 * (xy - lo) / np.where(hi - lo > 1e-9, hi - lo, 1.0)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=min(n, LAYOUT_POINTS), replace=False))
    perplexity = float(min(30, max(2, (len(rows) - 1) // 3)))
    xy = TSNE(2, init="pca", random_state=seed, perplexity=perplexity, max_iter=500).fit_transform(v[rows])
    positions = np.zeros((n, 2))
    positions[rows] = xy
    rest = np.setdiff1d(np.arange(n), rows)
    if len(rest):
        positions[rest] = place(v[rows], xy, v[rest])
    lo, hi = positions.min(axis=0), positions.max(axis=0)
    return rows, (positions - lo) / np.maximum(hi - lo, 1e-9)


def place(laid: np.ndarray, xy: np.ndarray, new: np.ndarray, k: int = 5) -> np.ndarray:
    """Positions for ``new`` vectors: the inverse-distance mean of their k nearest laid-out ones."""
    index = VectorIndex.build(laid)
    rows, d2 = index.search(new, k)
    w = 1.0 / (np.sqrt(d2) + 1e-6)
    return (xy[rows] * w[..., None]).sum(axis=1) / w.sum(axis=1, keepdims=True)
