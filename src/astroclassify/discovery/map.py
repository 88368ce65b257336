"""The map of a stored collection: t-SNE positions, a PCA stand-in while it is computed, later images placed."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from astroclassify.discovery.arrays import Collection
from astroclassify.discovery.layout import LAYOUT_POINTS, layout, place
from astroclassify.inference.predictor import OnnxPredictor

if TYPE_CHECKING:
    from astroclassify.discovery.collection import Discovery

__all__ = ["MAP_POINTS", "SYNC_MAP_POINTS", "MapPoint", "map_layout"]

# t-SNE of this many images or fewer runs in the request (well under a second); beyond, in the
# background while the map shows a PCA projection.
SYNC_MAP_POINTS = 300
MAP_POINTS = 2000  # points one map request returns at most (all marked ones first, then a seeded sample)


@dataclass(frozen=True)
class MapPoint:
    id: int
    x: float
    y: float
    label: str
    anomaly_score: float | None
    interesting: bool | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Layout:
    """Map positions for the first ``n`` rows of a scope: t-SNE on a sample, the rest placed."""

    n: int  # collection size it covers
    fitted_on: int  # scope size when the sample was laid out
    laid: np.ndarray  # (m, d) vectors of the laid-out sample
    laid_xy: np.ndarray  # (m, 2) their positions in [0, 1]
    rows: np.ndarray  # collection rows covered, ascending
    xy: np.ndarray  # (len(rows), 2)
    method: str  # "tsne", or "pca" until the t-SNE is ready


def _fit(coll: Collection, n: int, rows: np.ndarray, method: str) -> Layout:
    vectors = coll.matrix[rows]
    if method == "tsne":
        laid_rows, xy = layout(vectors)
        return Layout(n, len(rows), vectors[laid_rows], xy[laid_rows], rows, xy, "tsne")
    # PCA: the two main axes of a sample, every image projected (linear: a few ms at 100k).
    if len(vectors) < 4:
        return Layout(n, len(rows), vectors, np.full((len(rows), 2), 0.5), rows, np.full((len(rows), 2), 0.5), "pca")
    picked = np.random.default_rng(0).choice(len(vectors), size=min(len(vectors), LAYOUT_POINTS), replace=False)
    centre = vectors[picked].mean(axis=0)
    axes = np.linalg.svd(vectors[picked] - centre, full_matrices=False)[2][:2].T
    raw = (vectors - centre) @ axes
    lo, hi = raw.min(axis=0), raw.max(axis=0)
    xy = (raw - lo) / np.maximum(hi - lo, 1e-9)
    return Layout(n, len(rows), vectors[picked], xy[picked], rows, xy, "pca")


def _extend(coll: Collection, known: Layout, n: int, owner: str | None) -> Layout:
    """Place the scope's rows stored since ``known`` among its laid-out sample (no refit)."""
    fresh = np.arange(known.n, n)
    if owner is not None:
        fresh = fresh[coll.owner[known.n : n] == coll.owners.find(owner)]
    if not len(fresh):
        return dataclasses.replace(known, n=n)
    extra = np.clip(place(known.laid, known.laid_xy, coll.matrix[fresh]), 0, 1)
    return dataclasses.replace(known, n=n, rows=np.r_[known.rows, fresh], xy=np.vstack([known.xy, extra]))


def _keep(d: Discovery, key: tuple, layout_: Layout) -> None:
    """Keep ``layout_`` unless the kept one is better: a t-SNE over a PCA stand-in, then a later
    fit, then more images placed (a request's extended PCA must not replace a finished t-SNE)."""

    def rank(x: Layout) -> tuple:
        return (x.method == "tsne", x.fitted_on, x.n)

    with d.lock:
        current = d.maps.get(key)
        if current is None or rank(layout_) >= rank(current):
            d.maps[key] = layout_


def map_layout(d: Discovery, predictor: OnnxPredictor, *, owner: str | None, limit: int) -> tuple[list[MapPoint], str]:
    """The map's points and its method (see ``Discovery.map``)."""
    detector = d.detector_id(predictor)
    key = (detector, owner, "map")
    with d.store.session() as session:
        coll, n = d.collection(session, detector)
        rows = coll.rows_of(owner, n)
        with d.lock:
            known = d.maps.get(key)
        if known is None and len(rows) <= d.sync_map_points:
            known = _fit(coll, n, rows, "tsne")
        elif known is None or known.method != "tsne" or len(rows) >= 2 * max(known.fitted_on, 1):

            def job(rows: np.ndarray = rows, n: int = n) -> None:
                _keep(d, key, _fit(coll, n, rows, "tsne"))

            d.jobs.submit(key, job)
            if known is None:
                known = _fit(coll, n, rows, "pca")
        if known.n < n:
            known = _extend(coll, known, n, owner)
        _keep(d, key, known)
        marks = d.mark_log(session).latest(owner)[0]
        shown = _sample(coll, known, marks, limit)
        ids = [int(coll.ids[known.rows[i]]) for i in shown]
        points = [
            MapPoint(
                cid,
                round(float(known.xy[i, 0]), 4),
                round(float(known.xy[i, 1]), 4),
                str(coll.labels.names[coll.label[known.rows[i]]]),
                float(coll.base[known.rows[i]]),
                marks.get(cid),
            )
            for i, cid in zip(shown, ids, strict=True)
        ]
        return points, known.method


def _sample(coll: Collection, known: Layout, marks: dict[int, bool], limit: int) -> np.ndarray:
    """Positions (into ``known.rows``) to show: all when few, else marked ones and a seeded sample."""
    if len(known.rows) <= limit:
        return np.arange(len(known.rows))
    ids = coll.ids[known.rows]
    marked = np.flatnonzero(np.isin(ids, np.fromiter(marks, dtype=np.int64, count=len(marks))))[:limit]
    rest = np.setdiff1d(np.arange(len(ids)), marked)
    picked = np.random.default_rng(0).choice(rest, size=min(len(rest), limit - len(marked)), replace=False)
    return np.sort(np.r_[marked, picked])
