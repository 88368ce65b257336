"""Active learning: re-rank by what a person marked interesting or boring.

As in Astronomaly (Lochner & Bassett 2021), the unsupervised score is a prior and the marks
teach a model of what *this* person finds interesting; the two are blended by how close an
image lies to the nearest marked one, so the learned model speaks only where marks are near
and the anomaly score fills in elsewhere. The learned model is a logistic regression on the
compact embeddings (all marks, classes balanced); with marks of one kind only, closeness to
them alone moves the ranking.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from astroclassify.discovery.arrays import Collection, positions
from astroclassify.discovery.lookalikes import Neighbour, page_neighbours
from astroclassify.inference.predictor import OnnxPredictor
from astroclassify.store.discovery import DiscoveryRows

if TYPE_CHECKING:
    from astroclassify.discovery.collection import Discovery

__all__ = ["SYNC_RANK_PAIRS", "Ranked", "Ranking", "Reranker", "ranking", "rerank"]


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
    if not marks:
        return np.asarray(anomaly_score, dtype=np.float64).copy()
    return Reranker(compact, anomaly_score, reach=reach, prior_weight=prior_weight).scores(marks)


class Reranker:
    """``rerank`` kept up to date as marks and images arrive, for a collection that grows.

    What costs (images x marks) is each image's distance to its nearest marked image; marks
    are never taken back (a newer mark changes a verdict, not which images are marked), so
    that distance only ever shrinks and is updated for the new marks alone. The standardising
    statistics and the neighbour scale are fixed at construction: images added later
    (``extend``) are scaled with them, which a fresh ``Reranker`` would do slightly
    differently (refit one once the collection has grown by a good share). Not thread-safe.
    """

    def __init__(
        self, compact: np.ndarray, anomaly_score: np.ndarray, *, reach: float = 2.0, prior_weight: float = 0.5
    ) -> None:
        x = np.asarray(compact, dtype=np.float64)
        self.reach, self.prior_weight = reach, prior_weight
        self.mean, self.std = x.mean(axis=0), np.maximum(x.std(axis=0), 1e-9)
        self.z = (x - self.mean) / self.std
        self.base = np.asarray(anomaly_score, dtype=np.float64).copy()
        self.fitted_size = len(x)
        self._scale: float | None = None
        self._nearest = np.full(len(x), np.inf)  # squared distance to the nearest marked image
        self._marked = np.zeros(len(x), dtype=bool)
        self._model: object | None = None  # the last logistic regression, to start the next fit from

    def __len__(self) -> int:
        return len(self.z)

    @property
    def marked(self) -> int:
        """How many images' marks the nearest-mark distances include."""
        return int(self._marked.sum())

    def extend(self, compact: np.ndarray, anomaly_score: np.ndarray) -> None:
        """Append images (rows continue), scaled with the statistics fitted at construction."""
        z = (np.asarray(compact, dtype=np.float64) - self.mean) / self.std
        marked = self.z[self._marked]
        nearest = _nearest_squared(z, marked) if len(marked) else np.full(len(z), np.inf)
        self.z = np.vstack([self.z, z])
        self.base = np.r_[self.base, np.asarray(anomaly_score, dtype=np.float64)]
        self._nearest = np.r_[self._nearest, nearest]
        self._marked = np.r_[self._marked, np.zeros(len(z), dtype=bool)]

    def scores(self, marks: Mapping[int, bool]) -> np.ndarray:
        """The scores ``rerank`` gives for ``marks`` (row index to interesting), every row."""
        if not marks:
            return self.base.copy()
        rows = np.fromiter(marks.keys(), dtype=np.int64)
        y = np.fromiter((bool(v) for v in marks.values()), dtype=bool)
        new = rows[~self._marked[rows]]
        if len(new):
            self._nearest = np.minimum(self._nearest, _nearest_squared(self.z, self.z[new]))
            self._marked[new] = True
        if self._scale is None:
            self._scale = _neighbour_scale(self.z[: self.fitted_size])
        learned, self._model = _learned(self.z, rows, y, self._model)
        closeness = np.exp(-np.sqrt(self._nearest) / (self.reach * self._scale))
        prior = self.prior_weight
        blended = closeness * ((1 - prior) * learned + prior * self.base) + (1 - closeness) * self.base
        blended[rows] = y.astype(np.float64)
        return blended


def _learned(z: np.ndarray, rows: np.ndarray, y: np.ndarray, model: object | None = None) -> tuple[np.ndarray, object]:
    """P(interesting) from the marks: a balanced logistic regression, or the one kind marked.

    ``model``: the regression fitted on the marks before these, whose coefficients start
    this fit (a few more marks move the optimum little: a handful of iterations, not hundreds).
    """
    if y.all() or not y.any():
        return np.full(len(z), float(y[0])), model
    from sklearn.linear_model import LogisticRegression

    fitted = model if isinstance(model, LogisticRegression) else None
    if fitted is None:
        fitted = LogisticRegression(C=0.1, class_weight="balanced", max_iter=1000, warm_start=True)
    fitted.fit(z[rows], y)
    return fitted.predict_proba(z)[:, 1], fitted


# Distances are taken a block at a time, so memory stays near BLOCK_VALUES floats whatever
# the collection's size (100k images x 10k marks at once was 8 GB of float64).
BLOCK_VALUES = 4_000_000


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None], 0.0)


def _nearest_squared(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each row of ``a``, the squared distance to its nearest row of ``b`` (a block at a time)."""
    out = np.empty(len(a))
    step = max(1, BLOCK_VALUES // max(len(b), 1))
    for start in range(0, len(a), step):
        out[start : start + step] = _squared_distances(a[start : start + step], b).min(axis=1)
    return out


def _neighbour_scale(z: np.ndarray, sample: int = 500) -> float:
    """Median distance from an image to its nearest neighbour (on a fixed sample of rows)."""
    rng = np.random.default_rng(0)
    idx = rng.choice(len(z), size=min(sample, len(z)), replace=False)
    nearest = np.full(len(idx), np.inf)
    step = max(1, BLOCK_VALUES // len(idx))
    for start in range(0, len(z), step):  # the sample against every row, a block of rows at a time
        block = z[start : start + step]
        d = _squared_distances(z[idx], block)
        inside = np.flatnonzero((idx >= start) & (idx < start + len(block)))
        d[inside, idx[inside] - start] = np.inf  # not itself
        nearest = np.minimum(nearest, d.min(axis=1))
    return float(np.sqrt(np.median(nearest))) + 1e-9


# -- a stored collection, ranked --------------------------------------------------------


@dataclass(frozen=True)
class Ranked:
    id: int
    filename: str
    label: str
    confidence: float
    anomaly_score: float
    score: float  # the anomaly score re-learned from the marks
    interesting: bool | None
    source: str  # upload | apod | esahubble | ...
    neighbours: list[Neighbour] = field(default_factory=list)


@dataclass(frozen=True)
class Ranking:
    """Stored images by how interesting they now look, with the counts the page shows.

    ``updating``: the re-learned scores come from fewer marks or images than there are now
    (a newer ranking is being computed); marked images are at either end all the same.
    """

    items: list[Ranked]
    total: int
    marked: int
    interesting: int
    detector: str
    updating: bool = False


# Re-ranking costs about (images x new marks): below this it is done in the request (a few
# ms), above it in the background while requests read the last one finished. A collection
# that grows by a quarter gets its standardising statistics fitted again (``Reranker``).
SYNC_RANK_PAIRS = 2_000_000
REFIT_GROWTH = 1.25


@dataclass(frozen=True)
class Learned:
    """Scores re-learned from marks, for the first ``n`` collection rows of one owner's scope."""

    n: int
    newest_mark: int  # the newest mark of the scope it learned from
    rows: np.ndarray  # collection rows, ascending
    scores: np.ndarray  # per row of ``rows``
    order: np.ndarray  # positions in ``rows``, highest score first (sorted once, read by every page)


@dataclass
class RankState:
    """One scope's re-ranker and its newest result; ``busy`` while someone updates them."""

    busy: threading.Lock = field(default_factory=threading.Lock)
    reranker: Reranker | None = None
    result: Learned | None = None

    def cost(self, rows: np.ndarray, marks: dict[int, bool]) -> int:
        r = self.reranker
        if r is None or len(rows) > REFIT_GROWTH * r.fitted_size:
            return len(rows) * max(len(marks), 1)
        new_marks = len(marks) - r.marked
        return len(rows) * max(new_marks, 0) + (len(rows) - len(r)) * len(marks)

    def update(self, coll: Collection, rows: np.ndarray, n: int, marks: dict[int, bool], newest_mark: int) -> None:
        """Bring the scores up to ``n`` rows and ``newest_mark``; the caller holds ``busy``."""
        r = self.reranker
        if r is None or len(rows) > REFIT_GROWTH * r.fitted_size:
            r = Reranker(coll.matrix[rows], coll.base[rows])
        elif len(rows) > len(r):
            fresh = rows[len(r) :]
            r.extend(coll.matrix[fresh], coll.base[fresh])
        scores = r.scores(marks) if len(rows) else np.zeros(0)
        self.reranker = r
        self.result = Learned(n, newest_mark, rows, scores, np.argsort(-scores, kind="stable"))


def _current_scores(
    d: Discovery, key: tuple, coll: Collection, rows: np.ndarray, n: int, marks: dict[int, bool], newest_mark: int
) -> tuple[Learned | None, bool]:
    """The newest re-learned scores: updated now when cheap, else in the background.

    ``marks`` are keyed by position in ``rows``. Returns (learned or None, out of date).
    """
    with d.lock:
        state = d.ranks.setdefault(key, RankState())
    known = state.result
    if known is not None and (known.n, known.newest_mark) == (n, newest_mark):
        return known, False
    if state.cost(rows, marks) <= d.sync_rank_pairs and state.busy.acquire(blocking=False):
        try:
            state.update(coll, rows, n, marks, newest_mark)
            return state.result, False
        finally:
            state.busy.release()

    def job() -> None:
        with state.busy:
            state.update(coll, rows, n, marks, newest_mark)

    d.jobs.submit(key, job)
    return known, True


def ranking(
    d: Discovery,
    predictor: OnnxPredictor,
    *,
    label: str | None,
    source: str | None,
    limit: int,
    offset: int,
    neighbours: int,
    owner: str | None,
) -> Ranking:
    """Stored images ranked by the anomaly score re-learned from marks (see ``Discovery.ranking``)."""
    detector = d.detector_id(predictor)
    with d.store.session() as session:
        coll, n = d.collection(session, detector)
        every_mark, newest_mark = d.mark_log(session).latest(owner)
        rows = coll.rows_of(owner, n)
        if not len(rows):
            return Ranking([], 0, 0, 0, detector)
        ids = coll.ids[rows]
        marked = positions(ids, every_mark)  # position in rows -> mark
        learned, updating = _current_scores(d, (detector, owner, "rank"), coll, rows, n, marked, newest_mark)
        scores = coll.base[rows].copy()  # images newer than the learned scores keep their own
        if learned is not None:
            scores[: len(learned.rows)] = learned.scores
        if updating:  # the learned scores predate some marks: those still sort to either end
            for pos, value in marked.items():
                scores[pos] = float(value)
        marks = {int(ids[pos]): value for pos, value in marked.items()}
        fresh = not updating and learned is not None and len(learned.rows) == len(rows)
        order = learned.order if fresh else np.argsort(-scores, kind="stable")  # type: ignore[union-attr]
        if label or source:
            keep = np.ones(len(rows), dtype=bool)
            if label:
                keep &= coll.label[rows] == coll.labels.find(label)
            if source:
                keep &= coll.source[rows] == coll.sources.find(source)
            order = order[keep[order]]
        page = order[offset : offset + limit]
        page_ids = [int(i) for i in ids[page]]
        records = DiscoveryRows(session).records(page_ids)
        near = page_neighbours(d, session, detector, coll, n, owner, rows[page], page_ids, neighbours)
        items = []
        for pos, cid in zip(page, page_ids, strict=True):
            r = records[cid]
            src = coll.sources.names[coll.source[rows[pos]]] or "upload"
            items.append(
                Ranked(
                    cid,
                    r.filename,
                    r.label,
                    r.confidence,
                    r.anomaly_score or 0.0,
                    float(scores[pos]),
                    marks.get(cid),
                    src,
                    near.get(cid, []),
                )
            )
        return Ranking(items, len(order), len(marks), sum(marks.values()), detector, updating)
