"""Classify uploaded images and store them with their answers: what the web API's routes call.

An upload is looked up before it is decoded: one repeating an earlier upload (the same
``Idempotency-Key``, or the same bytes for the same model version and TTA) returns the earlier
record. Otherwise it is decoded, classified, saved under a generated name and recorded.
Decoding goes through ``run`` (the web app passes its pool of decode threads).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from astroclassify.config import DecodeLimits
from astroclassify.errors import ImageDecodeError
from astroclassify.imaging.decode import sniff_format
from astroclassify.inference.answer import answer_of
from astroclassify.inference.chunks import in_chunks
from astroclassify.inference.predictor import OnnxPredictor, Outcome
from astroclassify.store import Session
from astroclassify.store.classifications import Classifications, record_classification
from astroclassify.store.images import save_image
from astroclassify.store.tables import Classification

__all__ = ["BatchOutcome", "Upload", "UploadResult", "classify_batch", "classify_upload"]

BATCH_CHUNK = 16  # images decoded and held before one inference call


def _here(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


@dataclass(frozen=True)
class Upload:
    """One file as a client sent it."""

    name: str
    data: bytes | None
    error: str | None = None  # why it cannot be used (over a limit, an unsafe zip member)


@dataclass
class UploadResult:
    record: Classification
    already_stored: bool  # an earlier record returned, not a new one
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds: decode, infer, store


@dataclass
class BatchOutcome:
    name: str
    result: UploadResult | None = None
    error: str | None = None


@dataclass
class _Target:
    session: Session
    images: Path
    predictor: OnnxPredictor
    tta: str
    owner: str | None
    limits: DecodeLimits | None
    run: Callable[..., Any]

    def earlier(self, sha: str, key: str | None = None) -> Classification | None:
        b = self.predictor.bundle
        return Classifications(self.session).earlier_answer(
            sha, owner=self.owner, model_name=b.name, model_version=b.version, tta=self.tta, idempotency_key=key
        )

    def decode(self, data: bytes) -> np.ndarray:
        return self.run(self.predictor.prepare, data, limits=self.limits)

    def save(self, data: bytes) -> tuple[str, str]:
        """The file under a generated name: (stored name, format)."""
        fmt = sniff_format(data) or "unknown"
        return save_image(data, fmt, self.images), fmt

    def record(
        self, name: str, saved: tuple[str, str], sha: str, outcome: Outcome, key: str | None = None
    ) -> tuple[Classification, bool]:
        stored, fmt = saved
        try:
            record, created = record_classification(
                self.session,
                filename=name,
                stored_name=stored,
                sha256=sha,
                image_format=fmt,
                answer=answer_of(self.predictor, outcome, self.tta),
                owner=self.owner,
                idempotency_key=key,
            )
        except BaseException:  # no record (a full disk, say): its file would only be an orphan
            self.session.rollback()
            (self.images / stored).unlink(missing_ok=True)
            raise
        if not created:  # another request with the same key won the race: drop this copy
            (self.images / stored).unlink(missing_ok=True)
        return record, created


def classify_upload(
    session: Session,
    images: Path,
    predictor: OnnxPredictor,
    data: bytes,
    *,
    name: str,
    tta: str,
    owner: str | None = None,
    idempotency_key: str | None = None,
    limits: DecodeLimits | None = None,
    run: Callable[..., Any] = _here,
) -> UploadResult:
    """Classify one upload and store it (or return the record it repeats).

    Raises
    ------
    ImageDecodeError
        The upload is not an image we can decode within ``limits`` (message names ``name``).
    IdempotencyKeyReusedError
        ``idempotency_key`` was first sent with other bytes.
    """
    target = _Target(session, images, predictor, tta, owner, limits, run)
    sha = hashlib.sha256(data).hexdigest()
    earlier = target.earlier(sha, idempotency_key)
    if earlier is not None:
        return UploadResult(earlier, True)
    t0 = time.perf_counter()
    try:
        pixels = target.decode(data)
    except ImageDecodeError as exc:
        raise type(exc)(f"{name}: {str(exc).removeprefix('<bytes>: ')}") from None
    t1 = time.perf_counter()
    (outcome,) = predictor.outcomes(pixels[None], tta, [name])
    t2 = time.perf_counter()
    record, created = target.record(name, target.save(data), sha, outcome, idempotency_key)
    t3 = time.perf_counter()
    timings = {"decode": 1000 * (t1 - t0), "infer": 1000 * (t2 - t1), "store": 1000 * (t3 - t2)}
    return UploadResult(record, not created, timings)


@dataclass
class _Pending:
    """An upload on its way through the chunks: its bytes until saved, then where they were saved."""

    name: str
    data: bytes | None
    error: str | None
    sha: str = ""
    earlier: Classification | None = None
    saved: tuple[str, str] | None = None


def classify_batch(
    session: Session,
    images: Path,
    predictor: OnnxPredictor,
    uploads: Iterable[Upload],
    *,
    tta: str,
    owner: str | None = None,
    limits: DecodeLimits | None = None,
    run: Callable[..., Any] = _here,
) -> list[BatchOutcome]:
    """Classify many uploads, one file at a time; each gets its result or its error, in order.

    Files are decoded and stored as they come and classified in chunks of ``BATCH_CHUNK``,
    so a batch never sits in memory whole.
    """
    target = _Target(session, images, predictor, tta, owner, limits, run)

    def prepare(p: _Pending) -> np.ndarray | None:
        if p.data is None:
            return None  # refused before it arrived here (p.error says why)
        p.sha = hashlib.sha256(p.data).hexdigest()
        p.earlier = target.earlier(p.sha)
        if p.earlier is not None:
            return None
        pixels = target.decode(p.data)
        p.saved, p.data = target.save(p.data), None  # saved at once: no bytes wait for the chunk
        return pixels

    def infer(batch: np.ndarray, items: list[_Pending]) -> list[Outcome]:
        return predictor.outcomes(batch, tta, [p.name for p in items])

    outcomes: list[BatchOutcome] = []
    pending = (_Pending(u.name, u.data, u.error) for u in uploads)
    for c in in_chunks(pending, prepare, infer, size=BATCH_CHUNK, errors=(ImageDecodeError,)):
        p = c.item
        if c.error is not None:
            outcomes.append(BatchOutcome(p.name, error=str(c.error).removeprefix("<bytes>: ")))
        elif p.earlier is not None:
            outcomes.append(BatchOutcome(p.name, UploadResult(p.earlier, True)))
        elif c.result is None:
            outcomes.append(BatchOutcome(p.name, error=p.error))
        else:
            assert p.saved is not None
            record, created = target.record(p.name, p.saved, p.sha, c.result)
            outcomes.append(BatchOutcome(p.name, UploadResult(record, not created)))
    return outcomes
