"""Ingest a source into the store: fetch, check, dedupe, keep with provenance, optionally classify.

Each item is committed on its own, so an interrupted run loses at most the item in flight,
and a re-run skips every item already stored without a single request for it (the listing
page itself is revalidated with a conditional request). Failed items are recorded with their
error and tried again by the next run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from astroclassify.data.splits import DETAIL, DETAIL_CORR, NEAR_DUPLICATE_CORR, THUMB, fingerprint
from astroclassify.errors import AstroClassifyError
from astroclassify.imaging.decode import decode_pil, sniff_format
from astroclassify.ingest.records import ArchiveItem, NotAPicturePage, NothingFound, Stub
from astroclassify.store.images import EXTENSIONS, save_image
from astroclassify.store.ingested import DONE, Alerts, IngestedItems, IngestRuns, pack_fingerprint, unpack_fingerprint
from astroclassify.store.repository import new_classification
from astroclassify.store.tables import IngestedItem

__all__ = ["IngestOptions", "ItemOutcome", "RunSummary", "Source", "ingest"]

log = logging.getLogger(__name__)


class Source(Protocol):
    name: str

    def discover(self, since: dt.date | None = None, until: dt.date | None = None) -> Iterator[Stub]: ...

    def fetch(self, stub: Stub) -> ArchiveItem: ...


@dataclass(frozen=True)
class IngestOptions:
    since: dt.date | None = None
    until: dt.date | None = None
    limit: int | None = None  # most new items to handle (already-stored ones do not count)
    max_pixels: int = 50_000_000
    max_bytes: int = 64 * 1024 * 1024
    alert_below: float | None = None  # raise a low-confidence alert under this confidence
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
    item_id: int | None = None


@dataclass
class RunSummary:
    run_id: int
    counts: dict[str, int] = field(default_factory=lambda: {"stored": 0, "skipped": 0, "duplicate": 0, "failed": 0})
    alerts: int = 0
    status: str = "finished"
    error: str = ""


class _DedupeIndex:
    """Exact (decoded-pixel SHA-256) and near (thumbnail + detail correlation) duplicate search.

    Uses the same fingerprint and thresholds as dataset splitting (data/splits.py), so one
    definition of "the same picture" holds across the project.
    """

    def __init__(self, rows: list[tuple[int, str, bytes | None]]) -> None:
        self.exact = {sha: item_id for item_id, sha, _ in rows}
        self.ids: list[int] = []
        # Preallocated and doubled when full: appending by np.vstack copied the whole index per image.
        self.thumbs = np.zeros((max(len(rows), 64), THUMB * THUMB), np.float32)
        self.details = np.zeros((len(self.thumbs), DETAIL * DETAIL), np.float32)
        for item_id, _, blob in rows:
            if blob:
                t, d = unpack_fingerprint(blob, THUMB * THUMB)
                self._append(item_id, t, d)

    def find(self, fp) -> tuple[int, str, float] | None:
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

    def add(self, item_id: int, fp) -> None:
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
    source: Source,
    client,
    sessions: sessionmaker[Session],
    image_root: Path,
    options: IngestOptions = IngestOptions(),
    *,
    predictor=None,
    on_item: Callable[[ItemOutcome], None] | None = None,
) -> RunSummary:
    """Ingest ``source`` into the database and image store; see the module docstring."""
    with sessions() as session:
        params = {
            "since": options.since.isoformat() if options.since else None,
            "until": options.until.isoformat() if options.until else None,
            "limit": options.limit,
            "classify": predictor is not None,
        }
        run = IngestRuns(session).start(source.name, params)
        summary = RunSummary(run.id)
        items = IngestedItems(session)
        index = _DedupeIndex(items.with_pixels())
        if hasattr(source, "known"):  # lets a newest-first listing stop where stored images begin
            source.known = items.done_keys(source.name)
        handled = 0
        try:
            for stub in source.discover(options.since, options.until):
                existing = items.by_key(stub.key)
                if existing is not None and existing.status in DONE:
                    outcome = _outcome_of(existing, "skipped", reason="already stored")
                else:
                    if options.limit is not None and handled >= options.limit:
                        break
                    handled += 1
                    outcome = _ingest_one(
                        stub, existing, source, client, session, image_root, index, options, predictor
                    )
                    if outcome.status == "stored" and outcome.item_id is not None:
                        summary.alerts += _maybe_alert(session, outcome, options)
                summary.counts[outcome.status] = summary.counts.get(outcome.status, 0) + 1
                if on_item:
                    on_item(outcome)
        except KeyboardInterrupt:
            IngestRuns(session).finish(run, summary.counts, "interrupted", "interrupted by the user")
            raise
        except NothingFound as exc:  # the listing was read and has nothing in the range: say so
            summary.status, summary.error = "empty", str(exc)
            log.warning("%s: %s", source.name, exc)
        except AstroClassifyError as exc:  # the listing itself failed: nothing more to do this run
            summary.status, summary.error = "failed", str(exc)
            log.error("%s: %s", source.name, exc)
        IngestRuns(session).finish(run, summary.counts, summary.status, summary.error)
    return summary


def _ingest_one(
    stub: Stub,
    row: IngestedItem | None,
    source: Source,
    client,
    session: Session,
    image_root: Path,
    index,
    options,
    predictor,
) -> ItemOutcome:
    row = row or IngestedItem(key=stub.key, source=source.name, status="failed")
    row.attempts = (row.attempts or 0) + 1
    row.date, row.title, row.page_url, row.category = stub.date, stub.title, stub.page_url, stub.category
    items = IngestedItems(session)
    try:
        item = source.fetch(stub)
    except NotAPicturePage as exc:
        row.status, row.media_type, row.error = "recorded", "other", str(exc)
        items.save(row)
        return _outcome_of(row, "skipped", reason="not a picture page")
    except AstroClassifyError as exc:
        row.status, row.error = "failed", str(exc)
        items.save(row)
        return _outcome_of(row, "failed", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - a page the parser has never seen must not end the run
        log.exception("cannot parse %s", stub.page_url)
        row.status, row.error = "failed", f"cannot parse {stub.page_url}: {type(exc).__name__}: {exc}"
        items.save(row)
        return _outcome_of(row, "failed", error=row.error)
    if item.date and ((options.since and item.date < options.since) or (options.until and item.date > options.until)):
        # Listings without dates (ESA/Hubble) are filtered here, once the page gave the date.
        if options.since and item.date < options.since and hasattr(source, "note_older"):
            source.note_older(stub)
        if row.id is not None:
            items.save(row)
        return _outcome_of(row, "skipped", reason="outside --since/--until")
    _copy_provenance(row, item)
    if item.media_type != "image" or not item.image_url:
        row.status, row.error = "recorded", ""
        items.save(row)
        return _outcome_of(row, "skipped", reason=f"{item.media_type} day: recorded, not classified")
    try:
        response = client.get_image(item.image_url)
        image = decode_pil(response.content, max_pixels=options.max_pixels, max_bytes=options.max_bytes)
    except AstroClassifyError as exc:  # FetchError, ImageDecodeError
        row.status, row.error = "failed", str(exc).replace("<bytes>", item.image_url)
        items.save(row)
        return _outcome_of(row, "failed", error=row.error)

    data = response.content
    fmt = sniff_format(data) or "JPEG"
    fp = fingerprint(image)
    match = index.find(fp)
    row.sha256 = hashlib.sha256(data).hexdigest()
    row.pixels_sha256 = fp.pixels_sha
    row.fingerprint = pack_fingerprint(fp.thumb, fp.detail)
    row.width, row.height = image.size
    row.image_format = fmt
    row.error = ""
    if match is not None:
        original = items.get(match[0])
        row.status, row.duplicate_of_id, row.duplicate_kind = "duplicate", match[0], match[1]
        row.stored_name = original.stored_name if match[1] == "exact" else save_image(data, fmt, image_root)
        items.save(row)
        return _outcome_of(row, "duplicate", duplicate_of=original.key, reason=f"{match[1]} duplicate")
    row.stored_name = save_image(data, fmt, image_root)
    row.status = "stored"
    items.save(row)
    index.add(row.id, fp)
    outcome = _outcome_of(row, "stored")
    if predictor is not None:
        probs = predictor.predict_proba(predictor.prepare(np.asarray(image))[None])[0]
        b = predictor.bundle
        record = new_classification(
            filename=f"{_archive_name(row.key)}.{EXTENSIONS.get(fmt, 'bin')}",
            stored_name=row.stored_name,
            data=data,
            image_format=fmt,
            labels=predictor.labels,
            probabilities=probs,
            model_name=b.name,
            model_version=b.version,
            tta=b.tta,  # predict_proba without a mode uses the model's own
        )
        session.add(record)
        session.flush()
        row.classification_id = record.id
        session.commit()
        outcome.label, outcome.confidence = record.label, round(record.confidence, 4)
    return outcome


def _maybe_alert(session: Session, outcome: ItemOutcome, options: IngestOptions) -> int:
    if options.alert_below is None or outcome.confidence is None or outcome.confidence >= options.alert_below:
        return 0
    message = (
        f"{outcome.title or outcome.key}: the model is unsure ({outcome.label}, "
        f"confidence {outcome.confidence:.2f} < {options.alert_below:.2f})"
    )
    payload = {"kind": "low_confidence", **{k: v for k, v in vars(outcome).items() if v is not None}}
    alert = Alerts(session).raise_once(outcome.item_id, "low_confidence", message, payload, list(options.notifiers))
    return int(alert is not None)


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


def _outcome_of(row: IngestedItem, status: str, **extra) -> ItemOutcome:
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
