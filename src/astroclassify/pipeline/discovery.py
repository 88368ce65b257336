"""Discovery over the stored images: look-alikes, the ranking people teach, marks, the map.

Every classified image keeps its compact embedding (``store.tables.Embedding``) under the id
of the detector's projection; images are compared only within one id. The vectors of an id
are read once per process and topped up as records arrive (records are never deleted), so a
look-alike query over 100,000 images costs one matrix product, not a table scan.
"""

from __future__ import annotations

import csv
import shutil
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from astroclassify.anomalies.active import rerank
from astroclassify.anomalies.layout import layout, place
from astroclassify.anomalies.similar import VectorIndex
from astroclassify.errors import NoEmbeddingError, StoreError
from astroclassify.inference.predictor import OnnxPredictor
from astroclassify.store import Store
from astroclassify.store.classifications import Classifications
from astroclassify.store.tables import Classification, Embedding, IngestedItem, Mark

__all__ = [
    "MapPoint",
    "Neighbour",
    "Ranked",
    "Ranking",
    "SimilarResult",
    "anomaly_map",
    "anomaly_ranking",
    "export_marks",
    "mark_image",
    "similar_images",
]


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


# -- the stored vectors -----------------------------------------------------------------


@dataclass
class _Vectors:
    ids: np.ndarray  # classification ids, ascending
    matrix: np.ndarray  # (n, d) float32
    index: VectorIndex | None = None


_CACHE: dict[tuple[str, str], _Vectors] = {}
_LOCK = threading.Lock()


def _vectors(store: Store, session: Session, detector: str) -> _Vectors:
    """All stored embeddings under ``detector``, read incrementally and kept per process."""
    key = (str(store.engine.url), detector)
    with _LOCK:
        known = _CACHE.get(key) or _Vectors(np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32))
        newest = int(known.ids[-1]) if len(known.ids) else 0
        rows = session.execute(
            select(Embedding.classification_id, Embedding.vector)
            .where(Embedding.detector == detector, Embedding.classification_id > newest)
            .order_by(Embedding.classification_id)
        ).all()
        if rows:
            new = np.stack([np.frombuffer(v, dtype=np.float16).astype(np.float32) for _, v in rows])
            matrix = new if not len(known.ids) else np.vstack([known.matrix, new])
            known = _Vectors(np.r_[known.ids, [i for i, _ in rows]].astype(np.int64), matrix)
            _CACHE[key] = known
        if known.index is None and len(known.ids):
            known.index = VectorIndex.build(known.matrix)
        return known


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
        Only records this API key's owner may see.
    """
    record_id = _record_id(query)
    with store.session() as session:
        if record_id is not None:
            row = session.get(Embedding, record_id)
            if row is None:
                Classifications(session).get(record_id, owner=owner)  # 404 if it does not exist
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
        stored = _vectors(store, session, detector)
        if stored.index is None:
            return SimilarResult(label, detector, [])
        rows, d2 = stored.index.search(np.asarray(vector, dtype=np.float32)[None], k + 1 + (1 if owner else 0) * k)
        ids = [int(stored.ids[r]) for r in rows[0]]
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
    records = {r.id: r for r in session.scalars(select(Classification).where(Classification.id.in_(ids)))}
    marks = _latest_marks(session, ids)
    out = []
    for i, d in zip(ids, distances, strict=True):
        r = records.get(i)
        if r is None or i == exclude or (owner is not None and r.owner != owner):
            continue
        out.append(Neighbour(i, r.filename, r.label, r.confidence, r.anomaly_score, marks.get(i), round(float(d), 4)))
    return out


def _latest_marks(session: Session, ids: Sequence[int] | None = None) -> dict[int, bool]:
    newest = select(func.max(Mark.id)).group_by(Mark.classification_id)
    query = select(Mark.classification_id, Mark.interesting).where(Mark.id.in_(newest))
    if ids is not None:
        query = query.where(Mark.classification_id.in_(list(ids)))
    return {cid: bool(v) for cid, v in session.execute(query).all()}


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

    Returns the number of images written.
    """
    out = Path(out)
    if (out / "manifest.csv").exists():
        raise StoreError(f"{out} already holds a dataset (manifest.csv); choose an empty folder")
    with store.session() as session:
        latest = _latest_marks(session)
        marks = {
            m.classification_id: m
            for m in session.scalars(
                select(Mark).where(Mark.id.in_(select(func.max(Mark.id)).group_by(Mark.classification_id)))
            )
        }
        records = session.scalars(select(Classification).where(Classification.id.in_(list(latest)))).all()
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
            for r in records:
                m = marks[r.id]
                if owner is not None and m.owner != owner:
                    continue
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
    """Stored images by how interesting they now look, with the counts the page shows."""

    items: list[Ranked]
    total: int
    marked: int
    interesting: int
    detector: str


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

    Filters apply after ranking (the model learns from every mark). ``neighbours``: how
    many look-alikes to attach to each returned image.
    """
    detector = _detector_id(predictor)
    with store.session() as session:
        stored = _vectors(store, session, detector)
        if not len(stored.ids):
            return Ranking([], 0, 0, 0, detector)
        records = {
            r.id: r for r in session.scalars(select(Classification).where(Classification.id.in_(stored.ids.tolist())))
        }
        sources = dict(
            session.execute(
                select(IngestedItem.classification_id, IngestedItem.source).where(
                    IngestedItem.classification_id.in_(stored.ids.tolist())
                )
            ).all()
        )
        marks = _latest_marks(session)
        position = {int(cid): i for i, cid in enumerate(stored.ids)}
        base = np.array([records[int(c)].anomaly_score or 0.0 for c in stored.ids])
        learned = rerank(stored.matrix, base, {position[c]: v for c, v in marks.items() if c in position})
        order = np.argsort(-learned, kind="stable")
        chosen = []
        for i in order:
            r = records[int(stored.ids[i])]
            src = sources.get(r.id, "upload")
            if (label and r.label != label) or (source and src != source) or (owner is not None and r.owner != owner):
                continue
            chosen.append((r, float(learned[i]), src))
        total = len(chosen)
        page = chosen[offset : offset + limit]
        items = []
        for r, score, src in page:
            near: list[Neighbour] = []
            if neighbours:
                rows, d2 = stored.index.search(stored.matrix[position[r.id]][None], neighbours + 1)  # type: ignore[union-attr]
                ids = [int(stored.ids[j]) for j in rows[0]]
                near = _neighbours(session, ids, np.sqrt(d2[0]), exclude=r.id, owner=owner)[:neighbours]
            items.append(
                Ranked(
                    r.id, r.filename, r.label, r.confidence, r.anomaly_score or 0.0, score, marks.get(r.id), src, near
                )
            )
        return Ranking(items, total, len(marks), sum(marks.values()), detector)


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


@dataclass
class _Layout:
    ids: np.ndarray
    laid: np.ndarray  # rows of ids laid out by t-SNE
    xy: np.ndarray


_LAYOUTS: dict[tuple[str, str], _Layout] = {}


def anomaly_map(store: Store, predictor: OnnxPredictor, *, owner: str | None = None) -> list[MapPoint]:
    """Every stored image of the detector on a 2-D map (t-SNE), positions in [0, 1].

    The layout is kept and extended while the collection grows by less than a fifth; new
    images are placed among their nearest laid-out neighbours.
    """
    detector = _detector_id(predictor)
    with store.session() as session:
        stored = _vectors(store, session, detector)
        key = (str(store.engine.url), detector)
        with _LOCK:
            known = _LAYOUTS.get(key)
            if known is None or len(stored.ids) > 1.2 * max(len(known.ids), 1):
                laid, xy = layout(stored.matrix)
                known = _Layout(stored.ids.copy(), laid, xy)
            elif len(stored.ids) > len(known.ids):
                fresh = stored.matrix[len(known.ids) :]
                extra = place(stored.matrix[known.laid], known.xy[known.laid], fresh)
                known = _Layout(stored.ids.copy(), known.laid, np.vstack([known.xy, np.clip(extra, 0, 1)]))
            _LAYOUTS[key] = known
        records = {
            r.id: r for r in session.scalars(select(Classification).where(Classification.id.in_(stored.ids.tolist())))
        }
        marks = _latest_marks(session)
        points = []
        for cid, (x, y) in zip(known.ids, known.xy, strict=True):
            r = records[int(cid)]
            if owner is not None and r.owner != owner:
                continue
            points.append(
                MapPoint(r.id, round(float(x), 4), round(float(y), 4), r.label, r.anomaly_score, marks.get(r.id))
            )
        return points
