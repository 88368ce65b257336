"""Active learning: re-rank by what a person marked interesting or boring.

As in Astronomaly (Lochner & Bassett 2021), the unsupervised score is a prior and the marks
teach a model of what *this* person finds interesting; the two are blended by how close an
image lies to the nearest marked one, so the learned model speaks only where marks are near
and the anomaly score fills in elsewhere. The learned model is a logistic regression on the
compact embeddings (all marks, classes balanced); with marks of one kind only, closeness to
them alone moves the ranking.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["rerank"]


def rerank(
    compact: np.ndarray,
    anomaly_score: np.ndarray,
    marks: Mapping[int, bool],
    *,
    reach: float = 2.0,
    prior_weight: float = 0.5,
) -> np.ndarray:
    """Scores in [0, 1] for every row of ``compact``: the anomaly score re-learned from ``marks``.

    Parameters
    ----------
    compact : ndarray, (n, d)
        Compact embeddings of the images ranked (``Projection.compact``).
    anomaly_score : ndarray, (n,)
        The unsupervised scores in [0, 1].
    marks : mapping of int to bool
        Row index to the person's mark (True: interesting).
    reach : float
        How far a mark's influence reaches, in units of the typical distance between
        neighbouring images. This and ``prior_weight`` were chosen on a development pool
        (gz1-sdss validation images, a detector fitted on training images only).
    prior_weight : float
        The anomaly score's share where the learned model is confident and near (0: none).

    Returns
    -------
    ndarray, (n,)
        Marked rows get 1.0 (interesting) or 0.0 (boring), so they sort to either end.
    """
    x = np.asarray(compact, dtype=np.float64)
    base = np.asarray(anomaly_score, dtype=np.float64)
    if not marks:
        return base.copy()
    rows = np.fromiter(marks.keys(), dtype=np.int64)
    y = np.fromiter((bool(v) for v in marks.values()), dtype=bool)
    z = (x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-9)
    learned = _learned(z, rows, y)
    nearest = np.sqrt(_squared_distances(z, z[rows]).min(axis=1))
    closeness = np.exp(-nearest / (reach * _neighbour_scale(z)))
    blended = closeness * ((1 - prior_weight) * learned + prior_weight * base) + (1 - closeness) * base
    blended[rows] = y.astype(np.float64)
    return blended


def _learned(z: np.ndarray, rows: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(interesting) from the marks: a balanced logistic regression, or the one kind marked."""
    if y.all() or not y.any():
        return np.full(len(z), float(y[0]))
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=0.1, class_weight="balanced", max_iter=1000)
    model.fit(z[rows], y)
    return model.predict_proba(z)[:, 1]


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None], 0.0)


def _neighbour_scale(z: np.ndarray, sample: int = 500) -> float:
    """Median distance from an image to its nearest neighbour (on a fixed sample of rows)."""
    rng = np.random.default_rng(0)
    idx = rng.choice(len(z), size=min(sample, len(z)), replace=False)
    d = _squared_distances(z[idx], z)
    d[np.arange(len(idx)), idx] = np.inf
    return float(np.sqrt(np.median(d.min(axis=1)))) + 1e-9
