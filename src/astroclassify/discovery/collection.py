"""Discovery over the stored images: look-alikes, the ranking people teach, marks, the map.

Every classified image keeps its compact embedding (``store.tables.Embedding``) under the id
of the detector's projection; images are compared only within one id. The vectors of an id
are read once per process and topped up as records arrive (records are never deleted), so a
look-alike query over 100,000 images costs one matrix product, not a table scan.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import queue
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from astroclassify.discovery.layout import LAYOUT_POINTS, layout, place
from astroclassify.discovery.ranking import Reranker
from astroclassify.discovery.similarity import VectorIndex
from astroclassify.errors import NoEmbeddingError, StoreError
from astroclassify.inference.predictor import OnnxPredictor
from astroclassify.store import Session, Store
from astroclassify.store.classifications import Classifications
from astroclassify.store.discovery import DiscoveryRows
from astroclassify.store.tables import Mark

__all__ = [
    "MapPoint",
    "Neighbour",
    "Ranked",
    "Ranking",
    "SimilarResult",
    "anomaly_map",
    "anomaly_ranking",
    "export_marks",
    "map_layout",
    "mark_image",
    "similar_images",
    "warm_up",
]

log = logging.getLogger(__name__)
# Ids per IN (...) list: SQLite builds allow from 999 bound variables up.


@dataclass(frozen=True)
class Neighbour:
    id: int
    filename: str
    label: str
    confidence: float
    anomaly_score: float | None
    interesting: bool | None
    distance: float

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


# -- the stored collection --------------------------------------------------------------
#
# Every request must cost the same at 100 records or 100,000: nothing here reads or scores
# the whole collection per request. Per process and detector, the embeddings, base scores,
# owners, labels and sources are kept in arrays that only grow (records are never deleted),
# read incrementally; marks likewise. The ranking re-learned from marks and the map are
# computed off the request path when they are big, and a request reads the newest finished
# result (``updating`` says when a newer one is on its way). ``_LOCK`` only guards the
# dictionaries below: no computation or query runs under it.


class _Codes:
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
class _Collection:
    """Every stored embedding of one detector and what ranking needs of its record, grown in place."""

    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # ascending
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    base: np.ndarray = field(default_factory=lambda: np.zeros(0))  # anomaly scores
    owner: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    label: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    source: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))
    n: int = 0
    owners: _Codes = field(default_factory=_Codes)
    labels: _Codes = field(default_factory=_Codes)
    sources: _Codes = field(default_factory=_Codes)

    @property
    def newest(self) -> int:
        return int(self.ids[self.n - 1]) if self.n else 0

    def append(self, rows: Sequence[tuple]) -> None:
        """Add rows (id, vector bytes, anomaly score, owner, label, source) newer than the newest.

        Arrays grow by doubling, and rows below ``n`` are never written again, so a
        snapshot (``ids[:n]``) taken by a reader or a background job stays valid.
        """
        rows = [r for r in rows if r[0] > self.newest]
        if not rows:
            return
        vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float16).reshape(len(rows), -1)
        need = self.n + len(rows)
        if need > len(self.ids):
            size = max(need, 2 * len(self.ids), 1024)
            grown = _Collection(
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


@dataclass
class _MarkLog:
    """Every mark, in the order made (oldest first), grown in place like ``_Collection``."""

    ids: list[int] = field(default_factory=list)
    record: list[int] = field(default_factory=list)
    owner: list[str | None] = field(default_factory=list)
    interesting: list[bool] = field(default_factory=list)

    def latest(self, owner: str | None) -> tuple[dict[int, bool], int]:
        """Each record's newest mark by ``owner`` (by anyone for local use), and the newest mark's id."""
        out: dict[int, bool] = {}
        newest = 0
        for mid, cid, who, value in zip(self.ids, self.record, self.owner, self.interesting, strict=True):
            if owner is None or who == owner:
                out[cid] = value  # later marks overwrite earlier ones
                newest = mid
        return out, newest


_COLLECTIONS: dict[tuple[str, str], _Collection] = {}
_MARKS: dict[str, _MarkLog] = {}
_LOCK = threading.Lock()


_LOADING: dict[tuple[str, str], threading.Lock] = {}


def _collection(store: Store, session: Session, detector: str) -> tuple[_Collection, int]:
    """The detector's collection, topped up with records stored since; and its size now.

    One request at a time reads a collection's new rows (the others wait for it rather than
    read the same 100,000 rows again each); other collections are not held up.
    """
    key = (str(store.engine.url), detector)
    with _LOCK:
        coll = _COLLECTIONS.setdefault(key, _Collection())
        loading = _LOADING.setdefault(key, threading.Lock())
    with loading:
        return _top_up(coll, session, detector)


def _top_up(coll: _Collection, session: Session, detector: str) -> tuple[_Collection, int]:
    rows = DiscoveryRows(session).embeddings_after(detector, coll.newest)
    with _LOCK:  # appending copies only the new rows (or doubles the arrays, rarely)
        coll.append(rows)
        return coll, coll.n


def _mark_log(store: Store, session: Session) -> _MarkLog:
    key = str(store.engine.url)
    with _LOCK:
        log_ = _MARKS.setdefault(key, _MarkLog())
        newest = log_.ids[-1] if log_.ids else 0
    rows = DiscoveryRows(session).marks_after(newest)
    with _LOCK:
        for mid, cid, who, value in rows:
            if not log_.ids or mid > log_.ids[-1]:
                log_.ids.append(mid)
                log_.record.append(cid)
                log_.owner.append(who)
                log_.interesting.append(bool(value))
    return log_


@dataclass
class _ScopeIndex:
    """Look-alike search over one owner's rows of a collection (the whole of it for local use)."""

    n: int  # collection size it covers
    rows: np.ndarray  # collection row numbers
    index: VectorIndex


_INDEXES: dict[tuple[str, str, str | None], _ScopeIndex] = {}


# Past this many images a scope's look-alikes come from an HNSW graph (hnswlib), built once in
# the background and then grown in place; exact search answers meanwhile. A page of 50
# images with their look-alikes costs about 30 ms exact at 100k images, well under 1 ms on
# the graph, whose recall@10 is 1.0 there (bench/similarity.py).
GRAPH_FROM = 20_000


def _scope_index(store: Store, detector: str, coll: _Collection, n: int, owner: str | None) -> _ScopeIndex:
    """The search index of ``owner``'s rows, extended with rows stored since it was built.

    Filtering inside the search (not after it) is what makes ``k`` results come back
    whenever ``k`` exist, however many records other keys hold.
    """
    key = (str(store.engine.url), detector, owner)
    with _LOCK:
        known = _INDEXES.get(key)
    if known is None or known.n > n:
        every = coll.scope(owner)
        rows = every[: np.searchsorted(every, n)]
        built = _ScopeIndex(n, rows, VectorIndex.build(coll.matrix[rows], exact=True))
    elif known.n < n:
        every = np.arange(known.n, n)
        fresh = every if owner is None else every[coll.owner[known.n : n] == coll.owners.find(owner)]
        built = _ScopeIndex(n, np.r_[known.rows, fresh], known.index.extend(coll.matrix[fresh]))
    else:
        built = known
    if built is not known:
        with _LOCK:
            current = _INDEXES.get(key)
            if current is None or current.n <= built.n:
                _INDEXES[key] = built
    if built.index.exact and len(built.rows) >= GRAPH_FROM:

        def job(rows: np.ndarray = built.rows, n: int = built.n) -> None:
            graph = _ScopeIndex(n, rows, VectorIndex.build(coll.matrix[rows], exact=False))
            while True:  # images stored while the graph was built join it before it is used
                with _LOCK:
                    current = _INDEXES.get(key)
                    if current is None or current.n <= graph.n:
                        _INDEXES[key] = graph
                        return
                extra = current.rows[len(graph.rows) :]
                graph = _ScopeIndex(current.n, current.rows, graph.index.extend(coll.matrix[extra]))

        _in_background((*key, "graph"), job)
    return built


def warm_up(store: Store, predictor: OnnxPredictor) -> None:
    """Read the model's stored embeddings and build their index in the background (at server start),
    so that the first discovery requests do not each wait for 100,000 rows."""
    if predictor.detector is None or not predictor.detector.meta.get("id"):
        return
    detector = _detector_id(predictor)

    def job() -> None:
        with store.session() as session:
            coll, n = _collection(store, session, detector)
        _scope_index(store, detector, coll, n, None)

    _in_background((str(store.engine.url), detector, "warm-up"), job)


def _detector_id(predictor: OnnxPredictor) -> str:
    if predictor.detector is None or not predictor.detector.meta.get("id"):
        raise NoEmbeddingError(
            f"model {predictor.bundle.name!r} has no anomaly detector, so its images have no embeddings to compare; "
            "fit one with `astroclassify anomalies fit`"
        )
    return str(predictor.detector.meta["id"])


# -- look-alikes ------------------------------------------------------------------------


def similar_images(
    store: Store,
    query: int | str | Path | bytes,
    predictor: OnnxPredictor,
    *,
    k: int = 12,
    owner: str | None = None,
) -> SimilarResult:
    """The ``k`` stored images most like ``query``: a record id (``12`` or ``"#12"``) or an image.

    Parameters
    ----------
    store : Store
    query : int, str, Path or bytes
        A stored record (its embedding is reused) or an image file / bytes (embedded now).
    predictor : OnnxPredictor
        The model (with its detector) whose embeddings are compared.
    k : int
        How many look-alikes (the record itself is left out).
    owner : str, optional
        Only records this API key's owner may see: the query record must be one of them
        (else RecordNotFoundError, as for any record of another key), and so are the hits.
    """
    record_id = _record_id(query)
    with store.session() as session:
        if record_id is not None:
            Classifications(session).get(record_id, owner=owner)  # 404 for another key's record
            row = DiscoveryRows(session).embedding(record_id)
            if row is None:
                raise NoEmbeddingError(
                    f"classification {record_id} has no stored embedding (it was classified without an anomaly detector)"
                )
            detector, vector, label = row.detector, np.frombuffer(row.vector, dtype=np.float16), f"#{record_id}"
        else:
            detector = _detector_id(predictor)
            outcome = next(iter(predictor.run([query])))  # type: ignore[list-item]
            if outcome.error is not None or outcome.embedding is None:
                raise StoreError(f"{outcome.source}: {outcome.error or 'no embedding'}")
            vector, label = outcome.embedding, str(query) if not isinstance(query, bytes) else "<bytes>"
        coll, n = _collection(store, session, detector)
        scope = _scope_index(store, detector, coll, n, owner)
        rows, d2 = scope.index.search(np.asarray(vector, dtype=np.float32)[None], k + 1)
        ids = [int(coll.ids[scope.rows[r]]) for r in rows[0]]
        hits = _neighbours(session, ids, np.sqrt(d2[0]), exclude=record_id, owner=owner)[:k]
    return SimilarResult(label, detector, hits)


def _record_id(query: int | str | Path | bytes) -> int | None:
    if isinstance(query, int):
        return query
    if isinstance(query, str) and query.startswith("#") and query[1:].isdigit():
        return int(query[1:])
    return None


def _neighbours(
    session: Session, ids: Sequence[int], distances: np.ndarray, *, exclude: int | None, owner: str | None
) -> list[Neighbour]:
    """Records for a handful of ids (a page's worth: the IN list is short by construction)."""
    records = DiscoveryRows(session).records(ids)
    marks = DiscoveryRows(session).latest_marks(ids, owner)
    out = []
    for i, d in zip(ids, distances, strict=True):
        r = records.get(i)
        if r is None or i == exclude or (owner is not None and r.owner != owner):
            continue
        out.append(Neighbour(i, r.filename, r.label, r.confidence, r.anomaly_score, marks.get(i), round(float(d), 4)))
    return out


# -- marks ------------------------------------------------------------------------------


def mark_image(store: Store, record_id: int, interesting: bool, *, owner: str | None = None) -> Mark:
    """Record a person's verdict on a stored image; the ranking re-learns from it next time."""
    with store.session() as session:
        mark = Classifications(session).add_mark(record_id, interesting, owner=owner)
        session.refresh(mark)
        session.expunge(mark)
        return mark


def export_marks(store: Store, out: Path, *, owner: str | None = None) -> int:
    """Write marked images as a dataset folder: ``label`` interesting/boring, who and when.

    Only ``owner``'s marks count (everyone's for local use), the newest per image. Returns
    the number of images written.
    """
    out = Path(out)
    if (out / "manifest.csv").exists():
        raise StoreError(f"{out} already holds a dataset (manifest.csv); choose an empty folder")
    with store.session() as session:
        marked = DiscoveryRows(session).marked(owner)
        (out / "images").mkdir(parents=True, exist_ok=True)
        written = 0
        with (out / "manifest.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(
                [
                    "file",
                    "label",
                    "predicted",
                    "confidence",
                    "anomaly_score",
                    "marked_by",
                    "marked_at",
                    "classification_id",
                    "original_name",
                ]
            )
            for m, r in marked:
                src = store.images / r.stored_name
                if not src.is_file():
                    continue
                name = f"images/{r.stored_name}"
                shutil.copyfile(src, out / name)
                w.writerow(
                    [
                        name,
                        "interesting" if m.interesting else "boring",
                        r.label,
                        f"{r.confidence:.4f}",
                        "" if r.anomaly_score is None else f"{r.anomaly_score:.4f}",
                        m.owner or "local",
                        m.created_at.isoformat() if m.created_at else "",
                        r.id,
                        r.filename,
                    ]
                )
                written += 1
    return written


# -- the ranking ------------------------------------------------------------------------


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
class _Learned:
    """Scores re-learned from marks, for the first ``n`` collection rows of one owner's scope."""

    n: int
    newest_mark: int  # the newest mark of the scope it learned from
    rows: np.ndarray  # collection rows, ascending
    scores: np.ndarray  # per row of ``rows``
    order: np.ndarray  # positions in ``rows``, highest score first (sorted once, read by every page)


@dataclass
class _RankState:
    """One scope's re-ranker and its newest result; ``busy`` while someone updates them."""

    busy: threading.Lock = field(default_factory=threading.Lock)
    reranker: Reranker | None = None
    result: _Learned | None = None

    def cost(self, rows: np.ndarray, marks: dict[int, bool]) -> int:
        r = self.reranker
        if r is None or len(rows) > REFIT_GROWTH * r.fitted_size:
            return len(rows) * max(len(marks), 1)
        new_marks = len(marks) - r.marked
        return len(rows) * max(new_marks, 0) + (len(rows) - len(r)) * len(marks)

    def update(self, coll: _Collection, rows: np.ndarray, n: int, marks: dict[int, bool], newest_mark: int) -> None:
        """Bring the scores up to ``n`` rows and ``newest_mark``; the caller holds ``busy``."""
        r = self.reranker
        if r is None or len(rows) > REFIT_GROWTH * r.fitted_size:
            r = Reranker(coll.matrix[rows], coll.base[rows])
        elif len(rows) > len(r):
            fresh = rows[len(r) :]
            r.extend(coll.matrix[fresh], coll.base[fresh])
        scores = r.scores(marks) if len(rows) else np.zeros(0)
        self.reranker = r
        self.result = _Learned(n, newest_mark, rows, scores, np.argsort(-scores, kind="stable"))


_RANKS: dict[tuple, _RankState] = {}
_RUNNING: set[tuple] = set()


def _positions(sorted_ids: np.ndarray, marks: dict[int, bool]) -> dict[int, bool]:
    """Marks keyed by position in ``sorted_ids`` (marks of records not among them dropped)."""
    wanted = np.fromiter(marks, dtype=np.int64, count=len(marks))
    at = np.searchsorted(sorted_ids, wanted)
    ok = at < len(sorted_ids)
    ok[ok] = sorted_ids[at[ok]] == wanted[ok]
    values = list(marks.values())
    return {int(at[i]): values[i] for i in np.flatnonzero(ok)}


_JOBS: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
_WORKER: threading.Thread | None = None


def _in_background(key: tuple, job: Callable[[], None]) -> None:
    """Queue ``job`` unless one for ``key`` is already queued or running.

    Jobs run one at a time on a single daemon thread: a ranking, a map and a search graph
    built at once would take the cores from the requests and add up their memory. A daemon,
    so that a server stops at once (a job is only ever a cache refresh).
    """
    global _WORKER
    with _LOCK:
        if key in _RUNNING:
            return
        _RUNNING.add(key)
        if _WORKER is None or not _WORKER.is_alive():
            _WORKER = threading.Thread(target=_work, name="discovery-jobs", daemon=True)
            _WORKER.start()

    def run() -> None:
        from threadpoolctl import threadpool_limits

        try:
            with threadpool_limits(1):  # BLAS and OpenMP (t-SNE) on one core: the other serves requests
                job()
        except Exception:  # a failed refresh leaves the last result in place; the next request retries
            log.exception("background discovery job %s failed", key)
        finally:
            with _LOCK:
                _RUNNING.discard(key)

    _JOBS.put(run)


def _work() -> None:
    while True:
        _JOBS.get()()


def _learned(
    key: tuple, coll: _Collection, rows: np.ndarray, n: int, marks: dict[int, bool], newest_mark: int
) -> tuple[_Learned | None, bool]:
    """The newest re-learned scores: updated now when cheap, else in the background.

    ``marks`` are keyed by position in ``rows``. Returns (learned or None, out of date).
    """
    with _LOCK:
        state = _RANKS.setdefault(key, _RankState())
    known = state.result
    if known is not None and (known.n, known.newest_mark) == (n, newest_mark):
        return known, False
    if state.cost(rows, marks) <= SYNC_RANK_PAIRS and state.busy.acquire(blocking=False):
        try:
            state.update(coll, rows, n, marks, newest_mark)
            return state.result, False
        finally:
            state.busy.release()

    def job() -> None:
        with state.busy:
            state.update(coll, rows, n, marks, newest_mark)

    _in_background(key, job)
    return known, True


def anomaly_ranking(
    store: Store,
    predictor: OnnxPredictor,
    *,
    label: str | None = None,
    source: str | None = None,
    limit: int = 50,
    offset: int = 0,
    neighbours: int = 4,
    owner: str | None = None,
) -> Ranking:
    """Stored images of ``predictor``'s detector ranked by the anomaly score re-learned from marks.

    Only ``owner``'s images and marks count (everyone's for local use, without keys).
    Filters apply after ranking (the model learns from every mark). ``neighbours``: how
    many look-alikes to attach to each returned image. The cost of a request does not grow
    with the collection beyond a sort: the scores are kept between requests, and re-learned
    in the background when that is expensive (``Ranking.updating``).
    """
    detector = _detector_id(predictor)
    with store.session() as session:
        coll, n = _collection(store, session, detector)
        every_mark, newest_mark = _mark_log(store, session).latest(owner)
        every = coll.scope(owner)
        rows = every[: np.searchsorted(every, n)]
        if not len(rows):
            return Ranking([], 0, 0, 0, detector)
        ids = coll.ids[rows]
        marked = _positions(ids, every_mark)  # position in rows -> mark
        key = (str(store.engine.url), detector, owner, "rank")
        learned, updating = _learned(key, coll, rows, n, marked, newest_mark)
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
        near = _page_neighbours(store, session, detector, coll, n, owner, rows[page], page_ids, neighbours)
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


def _page_neighbours(
    store: Store,
    session: Session,
    detector: str,
    coll: _Collection,
    n: int,
    owner: str | None,
    rows: np.ndarray,
    ids: list[int],
    k: int,
) -> dict[int, list[Neighbour]]:
    """Look-alikes of a page of images, searched together (one matrix product) within the scope."""
    if not k or not ids:
        return {}
    scope = _scope_index(store, detector, coll, n, owner)
    found, d2 = scope.index.search(coll.matrix[rows], k + 1)
    hit_ids = [[int(coll.ids[scope.rows[j]]) for j in row] for row in found]
    flat = sorted({i for row in hit_ids for i in row})
    every = {nb.id: nb for nb in _neighbours(session, flat, np.zeros(len(flat)), exclude=None, owner=owner)}
    out = {}
    for cid, row, dist in zip(ids, hit_ids, np.sqrt(d2), strict=True):
        out[cid] = [
            dataclasses.replace(every[j], distance=round(float(d), 4))
            for j, d in zip(row, dist, strict=True)
            if j != cid and j in every
        ][:k]
    return out


# -- the map ----------------------------------------------------------------------------


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
class _Layout:
    """Map positions for the first ``n`` rows of a scope: t-SNE on a sample, the rest placed."""

    n: int  # collection size it covers
    fitted_on: int  # scope size when the sample was laid out
    laid: np.ndarray  # (m, d) vectors of the laid-out sample
    laid_xy: np.ndarray  # (m, 2) their positions in [0, 1]
    rows: np.ndarray  # collection rows covered, ascending
    xy: np.ndarray  # (len(rows), 2)
    method: str  # "tsne", or "pca" until the t-SNE is ready


_MAPS: dict[tuple, _Layout] = {}
# t-SNE of this many images or fewer runs in the request (well under a second); beyond, in the
# background while the map shows a PCA projection.
SYNC_MAP_POINTS = 300
MAP_POINTS = 2000  # points one map request returns at most (all marked ones first, then a seeded sample)


def _fit_layout(coll: _Collection, n: int, rows: np.ndarray, method: str) -> _Layout:
    vectors = coll.matrix[rows]
    if method == "tsne":
        laid_rows, xy = layout(vectors)
        return _Layout(n, len(rows), vectors[laid_rows], xy[laid_rows], rows, xy, "tsne")
    # PCA: the two main axes of a sample, every image projected (linear: a few ms at 100k).
    if len(vectors) < 4:
        return _Layout(n, len(rows), vectors, np.full((len(rows), 2), 0.5), rows, np.full((len(rows), 2), 0.5), "pca")
    picked = np.random.default_rng(0).choice(len(vectors), size=min(len(vectors), LAYOUT_POINTS), replace=False)
    centre = vectors[picked].mean(axis=0)
    axes = np.linalg.svd(vectors[picked] - centre, full_matrices=False)[2][:2].T
    raw = (vectors - centre) @ axes
    lo, hi = raw.min(axis=0), raw.max(axis=0)
    xy = (raw - lo) / np.maximum(hi - lo, 1e-9)
    return _Layout(n, len(rows), vectors[picked], xy[picked], rows, xy, "pca")


def _extend_layout(coll: _Collection, known: _Layout, n: int, owner: str | None) -> _Layout:
    """Place the scope's rows stored since ``known`` among its laid-out sample (no refit)."""
    fresh = np.arange(known.n, n)
    if owner is not None:
        fresh = fresh[coll.owner[known.n : n] == coll.owners.find(owner)]
    if not len(fresh):
        return dataclasses.replace(known, n=n)
    extra = np.clip(place(known.laid, known.laid_xy, coll.matrix[fresh]), 0, 1)
    return dataclasses.replace(known, n=n, rows=np.r_[known.rows, fresh], xy=np.vstack([known.xy, extra]))


def anomaly_map(
    store: Store, predictor: OnnxPredictor, *, owner: str | None = None, limit: int = MAP_POINTS
) -> list[MapPoint]:
    """Stored images of the detector on a 2-D map (t-SNE), positions in [0, 1]; see ``map_layout``."""
    return map_layout(store, predictor, owner=owner, limit=limit)[0]


def map_layout(
    store: Store, predictor: OnnxPredictor, *, owner: str | None = None, limit: int = MAP_POINTS
) -> tuple[list[MapPoint], str]:
    """The map's points (at most ``limit``: every marked image, then a seeded sample) and its method.

    t-SNE lays out a sample of at most ``LAYOUT_POINTS`` images; every other image is placed
    among its nearest laid-out neighbours, also images stored later, so positions stay put.
    For a large collection the t-SNE runs in the background; until it is ready the map is a
    PCA projection (method ``"pca"``). It is fitted again, in the background, once the
    collection has doubled. Only ``owner``'s images are shown (everyone's for local use).
    """
    detector = _detector_id(predictor)
    key = (str(store.engine.url), detector, owner, "map")
    with store.session() as session:
        coll, n = _collection(store, session, detector)
        every = coll.scope(owner)
        rows = every[: np.searchsorted(every, n)]
        with _LOCK:
            known = _MAPS.get(key)
        if known is None and len(rows) <= SYNC_MAP_POINTS:
            known = _fit_layout(coll, n, rows, "tsne")
        elif known is None or known.method != "tsne" or len(rows) >= 2 * max(known.fitted_on, 1):

            def job(rows: np.ndarray = rows, n: int = n) -> None:
                _keep_layout(key, _fit_layout(coll, n, rows, "tsne"))

            _in_background(key, job)
            if known is None:
                known = _fit_layout(coll, n, rows, "pca")
        if known.n < n:
            known = _extend_layout(coll, known, n, owner)
        _keep_layout(key, known)
        marks = _mark_log(store, session).latest(owner)[0]
        shown = _map_sample(coll, known, marks, limit)
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


def _keep_layout(key: tuple, layout_: _Layout) -> None:
    """Keep ``layout_`` unless the kept one is better: a t-SNE over a PCA stand-in, then a later
    fit, then more images placed (a request's extended PCA must not replace a finished t-SNE)."""

    def rank(x: _Layout) -> tuple:
        return (x.method == "tsne", x.fitted_on, x.n)

    with _LOCK:
        current = _MAPS.get(key)
        if current is None or rank(layout_) >= rank(current):
            _MAPS[key] = layout_


def _map_sample(coll: _Collection, known: _Layout, marks: dict[int, bool], limit: int) -> np.ndarray:
    """Positions (into ``known.rows``) to show: all when few, else marked ones and a seeded sample."""
    if len(known.rows) <= limit:
        return np.arange(len(known.rows))
    ids = coll.ids[known.rows]
    marked = np.flatnonzero(np.isin(ids, np.fromiter(marks, dtype=np.int64, count=len(marks))))[:limit]
    rest = np.setdiff1d(np.arange(len(ids)), marked)
    picked = np.random.default_rng(0).choice(rest, size=min(len(rest), limit - len(marked)), replace=False)
    return np.sort(np.r_[marked, picked])
