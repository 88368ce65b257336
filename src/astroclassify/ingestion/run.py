"""Ingest a source into the store: fetch, check, dedupe, keep with provenance, optionally classify.

Each item is committed on its own, so an interrupted run loses at most the item in flight,
and a re-run skips every item already stored without a single request for it (the listing
page itself is revalidated with a conditional request). Failed items are recorded with their
error and tried again by the next run.

One item goes through ``_Run.item`` in steps: fetch its page, keep its provenance, download
and decode its image, look for a duplicate, store it, classify it, raise an alert.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from astroclassify.config import DEFAULT_LIMITS, DecodeLimits
from astroclassify.errors import AstroClassifyError
from astroclassify.imaging.decode import decode_pil, sniff_format
from astroclassify.inference.answer import answer_of
from astroclassify.inference.predictor import OnnxPredictor
from astroclassify.ingestion.catalog import make_source
from astroclassify.ingestion.sources import (
    ArchiveItem,
    NotAPicturePage,
    NothingFound,
    Source,
    SourceOptions,
    Stub,
)
from astroclassify.net.alerts import Notifier, deliver_pending
from astroclassify.net.http import PoliteClient
from astroclassify.preparation.splits import DETAIL, DETAIL_CORR, NEAR_DUPLICATE_CORR, THUMB, Fingerprint, fingerprint
from astroclassify.store import Session, Store
from astroclassify.store.alerts import Alerts
from astroclassify.store.archive import DONE, IngestedItems, IngestRuns, pack_fingerprint, unpack_fingerprint
from astroclassify.store.classifications import record_classification
from astroclassify.store.images import EXTENSIONS, save_image
from astroclassify.store.tables import IngestedItem

__all__ = ["IngestOptions", "IngestResult", "ItemOutcome", "ingest"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestOptions:
    since: dt.date | None = None
    until: dt.date | None = None
    limit: int | None = None  # most new items to handle (already-stored ones do not count)
    limits: DecodeLimits = DEFAULT_LIMITS  # what one downloaded image may cost to decode
    alert_below: float | None = None  # raise a low-confidence alert under this confidence
    alert_unusual: bool = False  # raise an anomaly alert for images the detector flags unusual
    notifiers: tuple[str, ...] = ()  # names of the notifiers each new alert is queued for


@dataclass
class ItemOutcome:
    """One line of ``ingest --json``."""

    source: str
    key: str
    status: str  # stored | skipped | duplicate | failed
    date: str | None = None
    title: str = ""
    media_type: str = ""
    image_url: str | None = None
    hires_url: str | None = None
    credit: str = ""
    page_url: str = ""
    category: str = ""
    reason: str | None = None
    error: str | None = None
    duplicate_of: str | None = None
    label: str | None = None
    confidence: float | None = None
    anomaly_score: float | None = None
    unusual: bool | None = None
    model: str | None = None  # the model version that answered: NAME@VERSION
    item_id: int | None = None


@dataclass
class IngestResult:
    """What one run did: counts by status, alerts raised, how it ended (finished, failed, empty, interrupted)."""

    run_id: int
    source: str = ""
    counts: dict[str, int] = field(default_factory=lambda: {"stored": 0, "skipped": 0, "duplicate": 0, "failed": 0})
    alerts: int = 0
    status: str = "finished"
    error: str = ""
    requests: int = 0

    def __repr__(self) -> str:
        c = self.counts
        return (
            f"IngestResult({self.source}: {c.get('stored', 0)} stored, {c.get('duplicate', 0)} duplicate, "
            f"{c.get('skipped', 0)} skipped, {c.get('failed', 0)} failed; {self.status})"
        )


RunSummary = IngestResult  # the name before 0.2


class _DedupeIndex:
    """Exact (decoded-pixel SHA-256) and near (thumbnail + detail correlation) duplicate search.

    Uses the same fingerprint and thresholds as dataset splitting (preparation/splits.py), so one
    definition of "the same picture" holds across the project.
    """

    def __init__(self, rows: list[tuple[int, str | None, bytes | None]]) -> None:
        self.exact = {sha: item_id for item_id, sha, _ in rows}
        self.ids: list[int] = []
        # Preallocated and doubled when full: appending by np.vstack copied the whole index per image.
        self.thumbs = np.zeros((max(len(rows), 64), THUMB * THUMB), np.float32)
        self.details = np.zeros((len(self.thumbs), DETAIL * DETAIL), np.float32)
        for item_id, _, blob in rows:
            if blob:
                t, d = unpack_fingerprint(blob, THUMB * THUMB)
                self._append(item_id, t, d)

    def find(self, fp: Fingerprint) -> tuple[int, str, float] | None:
        if fp.pixels_sha in self.exact:
            return self.exact[fp.pixels_sha], "exact", 1.0
        n = len(self.ids)
        if not n:
            return None
        corr = self.thumbs[:n] @ fp.thumb
        for i in np.argsort(-corr)[:5]:
            if corr[i] < NEAR_DUPLICATE_CORR:
                break
            detail = float(self.details[i] @ fp.detail)
            if detail >= DETAIL_CORR:
                return self.ids[i], "near", detail
        return None

    def add(self, item_id: int, fp: Fingerprint) -> None:
        self.exact.setdefault(fp.pixels_sha, item_id)
        self._append(item_id, fp.thumb, fp.detail)

    def _append(self, item_id: int, thumb: np.ndarray, detail: np.ndarray) -> None:
        n = len(self.ids)
        if n == len(self.thumbs):
            self.thumbs = np.concatenate([self.thumbs, np.zeros_like(self.thumbs)])
            self.details = np.concatenate([self.details, np.zeros_like(self.details)])
        self.thumbs[n], self.details[n] = thumb, detail
        self.ids.append(item_id)


def ingest(
    source: str | Source,
    store: Store,
    *,
    client: PoliteClient | None = None,
    options: IngestOptions = IngestOptions(),
    source_options: SourceOptions | None = None,
    predictor: OnnxPredictor | None = None,
    notifiers: Sequence[Notifier] = (),
    on_item: Callable[[ItemOutcome], None] | None = None,
) -> IngestResult:
    """Ingest an archive into ``store``; see the module docstring.

    Parameters
    ----------
    source : str or Source
        A registered source name (``"apod"``, ``"esahubble"``) or a source object.
    store : Store
        Where records and images go (``astroclassify.store.open_store(home)``).
    client : PoliteClient, optional
        The HTTP client (default: a polite client with default settings).
    options : IngestOptions
        Date range, limit, decoding limits, alert threshold.
    source_options : SourceOptions, optional
        How to build ``source`` when it is a name (site, mirrors, API, categories).
    predictor : OnnxPredictor, optional
        Classify each new image with it.
    notifiers : sequence of Notifier
        Alerts raised in this run are queued for these and delivered at the end.
    on_item : callable, optional
        Called with each item's outcome as it is done (the CLI prints it).

    Examples
    --------
    >>> from astroclassify.store import open_store  # doctest: +SKIP
    >>> with open_store(home) as store:  # doctest: +SKIP
    ...     result = ingest("apod", store, options=IngestOptions(since=dt.date(2024, 1, 1)))
    """
    own_client = client is None
    client = client or PoliteClient(cache_dir=store.home / "cache" / "http")
    if isinstance(source, str):
        source = make_source(source, client, source_options)
    if notifiers:
        options = dataclasses.replace(options, notifiers=tuple(n.name for n in notifiers))
    try:
        with store.session() as session:
            result = _Run(source, client, session, store, options, predictor).all(on_item)
            if notifiers:
                deliver_pending(session, list(notifiers))
    finally:
        if own_client:
            client.close()
    result.requests = client.requests_made
    return result


@dataclass
class _Run:
    source: Source
    client: PoliteClient
    session: Session
    store: Store
    options: IngestOptions
    predictor: OnnxPredictor | None

    def all(self, on_item: Callable[[ItemOutcome], None] | None) -> IngestResult:
        """Every stub the source lists in range: skip the stored ones, handle the rest up to ``limit``."""
        o = self.options
        params = {
            "since": _iso(o.since),
            "until": _iso(o.until),
            "limit": o.limit,
            "classify": self.predictor is not None,
        }
        runs, items = IngestRuns(self.session), IngestedItems(self.session)
        run = runs.start(self.source.name, params)
        result = IngestResult(run.id, self.source.name)
        self.index = _DedupeIndex(items.with_pixels())
        self.source.known = items.done_keys(self.source.name)  # lets a newest-first listing stop early
        handled = 0
        try:
            for stub in self.source.discover(o.since, o.until):
                existing = items.by_key(stub.key)
                if existing is not None and existing.status in DONE:
                    outcome = _outcome_of(existing, "skipped", reason="already stored")
                else:
                    if o.limit is not None and handled >= o.limit:
                        break
                    handled += 1
                    outcome = self.item(stub, existing)
                    result.alerts += self.alert(outcome)
                result.counts[outcome.status] = result.counts.get(outcome.status, 0) + 1
                if on_item:
                    on_item(outcome)
        except KeyboardInterrupt:
            runs.finish(run, result.counts, "interrupted", "interrupted by the user")
            raise
        except NothingFound as exc:  # the listing was read and has nothing in the range: say so
            result.status, result.error = "empty", str(exc)
            log.warning("%s: %s", self.source.name, exc)
        except AstroClassifyError as exc:  # the listing itself failed: nothing more to do this run
            result.status, result.error = "failed", str(exc)
            log.error("%s: %s", self.source.name, exc)
        runs.finish(run, result.counts, result.status, result.error)
        return result

    def item(self, stub: Stub, row: IngestedItem | None) -> ItemOutcome:
        """One new (or previously failed) item, step by step; each step may end it."""
        row = self.start_row(stub, row)
        item = self.fetch(stub, row)
        if isinstance(item, ItemOutcome):
            return item
        if self.out_of_range(stub, item):
            if row.id is not None:
                self.save(row)
            return _outcome_of(row, "skipped", reason="outside --since/--until")
        _copy_provenance(row, item)
        if item.media_type != "image" or not item.image_url:
            row.status, row.error = "recorded", ""
            self.save(row)
            return _outcome_of(row, "skipped", reason=f"{item.media_type} day: recorded, not classified")
        download = self.download(item.image_url, row)
        if isinstance(download, ItemOutcome):
            return download
        data, image = download
        fp = fingerprint(image)
        self.describe_image(row, data, image, fp)
        match = self.index.find(fp)
        if match is not None:
            return self.store_duplicate(row, data, match)
        row.stored_name = save_image(data, row.image_format or "JPEG", self.store.images)
        row.status = "stored"
        self.save(row)
        self.index.add(row.id, fp)
        outcome = _outcome_of(row, "stored")
        if self.predictor is not None:
            self.classify(row, image, outcome)
        return outcome

    def start_row(self, stub: Stub, row: IngestedItem | None) -> IngestedItem:
        row = row or IngestedItem(key=stub.key, source=self.source.name, status="failed")
        row.attempts = (row.attempts or 0) + 1
        row.date, row.title, row.page_url, row.category = stub.date, stub.title, stub.page_url, stub.category
        return row

    def fetch(self, stub: Stub, row: IngestedItem) -> ArchiveItem | ItemOutcome:
        try:
            return self.source.fetch(stub)
        except NotAPicturePage as exc:
            row.status, row.media_type, row.error = "recorded", "other", str(exc)
            self.save(row)
            return _outcome_of(row, "skipped", reason="not a picture page")
        except AstroClassifyError as exc:
            return self.fail(row, str(exc))
        except Exception as exc:  # noqa: BLE001 - a page the parser has never seen must not end the run
            log.exception("cannot parse %s", stub.page_url)
            return self.fail(row, f"cannot parse {stub.page_url}: {type(exc).__name__}: {exc}")

    def out_of_range(self, stub: Stub, item: ArchiveItem) -> bool:
        """Listings without dates (ESA/Hubble) are filtered here, once the page gave the date."""
        o = self.options
        if not item.date:
            return False
        older = o.since is not None and item.date < o.since
        if older:
            self.source.note_older(stub)
        return older or (o.until is not None and item.date > o.until)

    def download(self, url: str, row: IngestedItem) -> tuple[bytes, Image.Image] | ItemOutcome:
        try:
            response = self.client.get_image(url)
            image = decode_pil(response.content, limits=self.options.limits)
        except AstroClassifyError as exc:  # FetchError, ImageDecodeError
            return self.fail(row, str(exc).replace("<bytes>", url))
        return response.content, image

    @staticmethod
    def describe_image(row: IngestedItem, data: bytes, image: Image.Image, fp: Fingerprint) -> None:
        row.sha256 = hashlib.sha256(data).hexdigest()
        row.pixels_sha256 = fp.pixels_sha
        row.fingerprint = pack_fingerprint(fp.thumb, fp.detail)
        row.width, row.height = image.size
        row.image_format = sniff_format(data) or "JPEG"
        row.error = ""

    def store_duplicate(self, row: IngestedItem, data: bytes, match: tuple[int, str, float]) -> ItemOutcome:
        """Kept and reported, not dropped: an exact copy shares the original's file."""
        original = IngestedItems(self.session).get(match[0])
        row.status, row.duplicate_of_id, row.duplicate_kind = "duplicate", match[0], match[1]
        if match[1] == "exact" and original is not None:
            row.stored_name = original.stored_name
        else:
            row.stored_name = save_image(data, row.image_format or "JPEG", self.store.images)
        self.save(row)
        return _outcome_of(
            row, "duplicate", duplicate_of=original.key if original else None, reason=f"{match[1]} duplicate"
        )

    def classify(self, row: IngestedItem, image: Image.Image, outcome: ItemOutcome) -> None:
        p = self.predictor
        assert p is not None and row.stored_name and row.sha256
        (result,) = p.outcomes(p.prepare(np.asarray(image))[None])  # the model's own TTA
        record, _ = record_classification(
            self.session,
            filename=f"{_archive_name(row.key)}.{EXTENSIONS.get(row.image_format or '', 'bin')}",
            stored_name=row.stored_name,
            sha256=row.sha256,
            image_format=row.image_format or "JPEG",
            answer=answer_of(p, result, p.bundle.tta),
        )
        row.classification_id = record.id
        self.save(row)
        outcome.label, outcome.confidence = record.label, round(record.confidence, 4)
        outcome.model = f"{record.model_name}@{record.model_version}"
        if record.anomaly_score is not None:
            outcome.anomaly_score, outcome.unusual = round(record.anomaly_score, 4), record.unusual

    def alert(self, outcome: ItemOutcome) -> int:
        """Alerts for a newly classified image: low confidence, unusual (each at most once per image)."""
        if outcome.status != "stored" or outcome.label is None:
            return 0
        assert outcome.item_id is not None
        name = outcome.title or outcome.key
        raised = []
        threshold = self.options.alert_below
        if threshold is not None and outcome.confidence is not None and outcome.confidence < threshold:
            message = (
                f"{name}: the model is unsure ({outcome.label}, confidence {outcome.confidence:.2f} < {threshold:.2f})"
            )
            raised.append(self._raise(outcome, "low_confidence", message))
        if self.options.alert_unusual and outcome.unusual:
            message = (
                f"{name}: unusual image (anomaly score {outcome.anomaly_score:.3f}; "
                f"looks like {outcome.label} at confidence {outcome.confidence:.2f})"
            )
            raised.append(self._raise(outcome, "anomaly", message))
        return sum(raised)

    def _raise(self, outcome: ItemOutcome, kind: str, message: str) -> int:
        assert outcome.item_id is not None
        payload = {"kind": kind, **{k: v for k, v in vars(outcome).items() if v is not None}}
        alert = Alerts(self.session).raise_once(outcome.item_id, kind, message, payload, list(self.options.notifiers))
        return int(alert is not None)

    def fail(self, row: IngestedItem, error: str) -> ItemOutcome:
        row.status, row.error = "failed", error
        self.save(row)
        return _outcome_of(row, "failed", error=error)

    def save(self, row: IngestedItem) -> None:
        IngestedItems(self.session).save(row)


def _iso(date: dt.date | None) -> str | None:
    return date.isoformat() if date else None


def _copy_provenance(row: IngestedItem, item: ArchiveItem) -> None:
    row.date = item.date or row.date
    row.title = item.title or row.title
    row.page_url = item.page_url
    row.media_type = item.media_type
    row.image_url, row.hires_url = item.image_url, item.hires_url
    row.video_url, row.thumbnail_url = item.video_url, item.thumbnail_url
    row.credit, row.license, row.explanation = item.credit, item.license, item.explanation
    row.category = item.category or row.category


def _archive_name(key: str) -> str:
    """A file name that carries the archive id (``ap200609``, ``heic0506a``), so credit lines follow it."""
    source, _, ident = key.partition(":")
    if source == "apod":
        return "ap" + dt.date.fromisoformat(ident).strftime("%y%m%d")
    return ident


def _outcome_of(row: IngestedItem, status: str, **extra: Any) -> ItemOutcome:
    return ItemOutcome(
        source=row.source,
        key=row.key,
        status=status,
        date=row.date.isoformat() if row.date else None,
        title=row.title or "",
        media_type=row.media_type or "",
        image_url=row.image_url,
        hires_url=row.hires_url,
        credit=row.credit or "",
        page_url=row.page_url or "",
        category=row.category or "",
        item_id=row.id,
        label=row.classification.label if row.classification_id and row.classification else None,
        **extra,
    )
