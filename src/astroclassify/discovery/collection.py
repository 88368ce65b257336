"""Discovery over the stored images: look-alikes, the ranking people teach, marks, the map.

Every classified image keeps its compact embedding (``store.tables.Embedding``) under the id
of the detector's projection; images are compared only within one id. A ``Discovery`` holds
one store's vectors (read once, topped up as records arrive: records are never deleted), its
search indexes, re-learned rankings and maps, and the background thread that refreshes them
when that is expensive, so a look-alike query over 100,000 images costs one matrix product,
not a table scan. An ``Installation`` owns one (the web app's); the functions below use one
per store for notebooks and the command line.
"""

from __future__ import annotations

import csv
import shutil
import threading
import weakref
from pathlib import Path

from astroclassify.discovery.arrays import Collection, MarkLog
from astroclassify.discovery.jobs import BackgroundJobs
from astroclassify.discovery.lookalikes import GRAPH_FROM, Neighbour, ScopeIndex, SimilarResult, scope_index
from astroclassify.discovery.lookalikes import similar as _similar
from astroclassify.discovery.map import MAP_POINTS, SYNC_MAP_POINTS, Layout, MapPoint
from astroclassify.discovery.map import map_layout as _map_layout
from astroclassify.discovery.ranking import SYNC_RANK_PAIRS, Ranked, Ranking, RankState
from astroclassify.discovery.ranking import ranking as _ranking
from astroclassify.errors import NoEmbeddingError, StoreError
from astroclassify.inference.predictor import OnnxPredictor
from astroclassify.store import Session, Store
from astroclassify.store.classifications import Classifications
from astroclassify.store.discovery import DiscoveryRows
from astroclassify.store.tables import Mark

__all__ = [
    "Discovery",
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


class Discovery:
    """One store's discovery: its collections, indexes, rankings, maps and background worker.

    Parameters
    ----------
    store : Store
        The installation's store.
    graph_from : int
        Past this many images in a scope, look-alikes come from an HNSW graph built in the background.
    sync_rank_pairs : int
        Re-ranking costing more (images x new marks) runs in the background.
    sync_map_points : int
        A t-SNE map of more images runs in the background (a PCA map stands in).
    """

    def __init__(
        self,
        store: Store,
        *,
        graph_from: int = GRAPH_FROM,
        sync_rank_pairs: int = SYNC_RANK_PAIRS,
        sync_map_points: int = SYNC_MAP_POINTS,
    ) -> None:
        self.store = store
        self.graph_from = graph_from
        self.sync_rank_pairs = sync_rank_pairs
        self.sync_map_points = sync_map_points
        self.jobs = BackgroundJobs()
        # ``lock`` only guards the dictionaries below: no computation or query runs under it.
        self.lock = threading.Lock()
        self.collections: dict[str, Collection] = {}  # by detector id
        self._loading: dict[str, threading.Lock] = {}
        self.marks = MarkLog()
        self.indexes: dict[tuple[str, str | None], ScopeIndex] = {}
        self.ranks: dict[tuple, RankState] = {}
        self.maps: dict[tuple, Layout] = {}

    _shared: weakref.WeakKeyDictionary[Store, Discovery] = weakref.WeakKeyDictionary()
    _shared_lock = threading.Lock()

    @classmethod
    def of(cls, store: Store) -> Discovery:
        """The ``Discovery`` of ``store`` for this process (made on first use, gone with the store)."""
        with cls._shared_lock:
            found = cls._shared.get(store)
            if found is None:
                found = cls._shared[store] = cls(store)
            return found

    # -- what every query reads ---------------------------------------------------------------

    def collection(self, session: Session, detector: str) -> tuple[Collection, int]:
        """The detector's collection, topped up with records stored since; and its size now.

        One request at a time reads a collection's new rows (the others wait for it rather than
        read the same 100,000 rows again each); other collections are not held up.
        """
        with self.lock:
            coll = self.collections.setdefault(detector, Collection())
            loading = self._loading.setdefault(detector, threading.Lock())
        with loading:
            rows = DiscoveryRows(session).embeddings_after(detector, coll.newest)
            with self.lock:  # appending copies only the new rows (or doubles the arrays, rarely)
                coll.append(rows)
                return coll, coll.n

    def mark_log(self, session: Session) -> MarkLog:
        with self.lock:
            newest = self.marks.newest
        rows = DiscoveryRows(session).marks_after(newest)
        with self.lock:
            self.marks.append(rows)
        return self.marks

    @staticmethod
    def detector_id(predictor: OnnxPredictor) -> str:
        if predictor.detector is None or not predictor.detector.meta.get("id"):
            raise NoEmbeddingError(
                f"model {predictor.bundle.name!r} has no anomaly detector, so its images have no embeddings to compare; "
                "fit one with `astroclassify anomalies fit`"
            )
        return str(predictor.detector.meta["id"])

    # -- the three questions ------------------------------------------------------------------

    def similar(
        self, query: int | str | Path | bytes, predictor: OnnxPredictor, *, k: int = 12, owner: str | None = None
    ) -> SimilarResult:
        """The ``k`` stored images most like ``query``: a record id (``12`` or ``"#12"``) or an image.

        ``owner``: only records this API key's owner may see (the query record must be one of
        them, else RecordNotFoundError, as for any record of another key), and so are the hits.
        """
        return _similar(self, query, predictor, k=k, owner=owner)

    def ranking(
        self,
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
        return _ranking(
            self, predictor, label=label, source=source, limit=limit, offset=offset, neighbours=neighbours, owner=owner
        )

    def map(
        self, predictor: OnnxPredictor, *, owner: str | None = None, limit: int = MAP_POINTS
    ) -> tuple[list[MapPoint], str]:
        """The map's points (at most ``limit``: every marked image, then a seeded sample) and its method.

        t-SNE lays out a sample of at most ``LAYOUT_POINTS`` images; every other image is placed
        among its nearest laid-out neighbours, also images stored later, so positions stay put.
        For a large collection the t-SNE runs in the background; until it is ready the map is a
        PCA projection (method ``"pca"``). It is fitted again, in the background, once the
        collection has doubled. Only ``owner``'s images are shown (everyone's for local use).
        """
        return _map_layout(self, predictor, owner=owner, limit=limit)

    def warm_up(self, predictor: OnnxPredictor) -> None:
        """Read the model's stored embeddings and build their index in the background (at server start),
        so that the first discovery requests do not each wait for 100,000 rows."""
        if predictor.detector is None or not predictor.detector.meta.get("id"):
            return
        detector = self.detector_id(predictor)

        def job() -> None:
            with self.store.session() as session:
                coll, n = self.collection(session, detector)
            scope_index(self, detector, coll, n, None)

        self.jobs.submit((detector, "warm-up"), job)


# -- the library's functions: one call each, on the store's Discovery ---------------------------


def similar_images(
    store: Store, query: int | str | Path | bytes, predictor: OnnxPredictor, *, k: int = 12, owner: str | None = None
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
    return Discovery.of(store).similar(query, predictor, k=k, owner=owner)


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
    """Stored images ranked by the anomaly score re-learned from marks; see ``Discovery.ranking``."""
    return Discovery.of(store).ranking(
        predictor, label=label, source=source, limit=limit, offset=offset, neighbours=neighbours, owner=owner
    )


def anomaly_map(
    store: Store, predictor: OnnxPredictor, *, owner: str | None = None, limit: int = MAP_POINTS
) -> list[MapPoint]:
    """Stored images of the detector on a 2-D map (t-SNE), positions in [0, 1]; see ``Discovery.map``."""
    return Discovery.of(store).map(predictor, owner=owner, limit=limit)[0]


def map_layout(
    store: Store, predictor: OnnxPredictor, *, owner: str | None = None, limit: int = MAP_POINTS
) -> tuple[list[MapPoint], str]:
    """The map's points and its method (``"tsne"``, or ``"pca"`` while the t-SNE is computed)."""
    return Discovery.of(store).map(predictor, owner=owner, limit=limit)


def warm_up(store: Store, predictor: OnnxPredictor) -> None:
    """Read the model's stored embeddings into the store's ``Discovery`` in the background."""
    Discovery.of(store).warm_up(predictor)


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
