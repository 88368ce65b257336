"""JSON API: classify uploads, browse stored classifications, take feedback, describe the model.

Routes are plain ``def``: decoding and inference are CPU work, which FastAPI runs in its
thread pool instead of blocking the event loop.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, File, HTTPException, Query, Request, Response, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from astroclassify.config import Settings
from astroclassify.errors import FileTooLargeError, ImageDecodeError
from astroclassify.imaging.decode import sniff_format
from astroclassify.store.export import export_feedback
from astroclassify.store.images import derived_image, save_image, stored_path
from astroclassify.store.repository import Classifications, new_classification
from astroclassify.store.tables import Classification as ClassificationRow
from astroclassify.web.credit import record_credit
from astroclassify.web.deps import (
    ClassificationQueryDep,
    CurrentUser,
    PredictorDep,
    RecordId,
    SessionDep,
    SettingsDep,
)

router = APIRouter(tags=["api"])


class FeedbackOut(BaseModel):
    label: str
    comment: str
    created_at: dt.datetime


class CreditOut(BaseModel):
    archive: str
    id: str
    text: str
    url: str
    license: str


class Classification(BaseModel):
    id: int
    file: str
    label: str
    confidence: float
    probabilities: dict[str, float]
    model: str
    model_version: str
    low_confidence: bool = Field(description="Confidence under the server's threshold: treat the label with care.")
    anomaly_score: float | None = Field(default=None, description="Not computed by this model yet.")
    explanation_url: str = Field(description="Grad-CAM overlay of this image (PNG).")
    credit: CreditOut | None = Field(default=None, description="Archive credit when the file name is a known id.")
    created_at: dt.datetime | None = None
    feedback: list[FeedbackOut] = []


class ClassificationPage(BaseModel):
    items: list[Classification]
    total: int
    page: int
    per_page: int


class FeedbackIn(BaseModel):
    label: str = Field(min_length=1, max_length=64)
    comment: str = Field(default="", max_length=2000)


class ModelInfo(BaseModel):
    name: str
    version: str
    arch: str
    labels: list[str]
    image_size: int
    temperature: float
    tta: str = Field(description="Test-time augmentation this server applies.")
    explainable: bool = Field(description="Whether the model returns Grad-CAM maps.")
    metrics: dict


def _out(row: ClassificationRow, settings: Settings, session, with_feedback: bool = False) -> Classification:
    credit = record_credit(session, row)
    return Classification(
        id=row.id,
        file=row.filename,
        label=row.label,
        confidence=row.confidence,
        probabilities=row.probabilities,
        model=row.model_name,
        model_version=row.model_version,
        low_confidence=row.confidence < settings.low_confidence_threshold,
        explanation_url=f"/api/classifications/{row.id}/explanation.png",
        credit=CreditOut(**dataclasses.asdict(credit)) if credit else None,
        created_at=row.created_at,
        feedback=[FeedbackOut(label=f.label, comment=f.comment, created_at=f.created_at) for f in row.feedback]
        if with_feedback
        else [],
    )


def _read_limited(upload: UploadFile, limit: int) -> bytes:
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise FileTooLargeError(f"{upload.filename or 'upload'}: upload is over the {limit / 1e6:.0f} MB limit")
    return data


def _store(request: Request, session, predictor, name: str, data: bytes, probs, owner: str | None) -> Classification:
    """Save the upload under a generated name and record the model's answer."""
    fmt = sniff_format(data) or "unknown"
    b = predictor.bundle
    row = new_classification(
        filename=name,
        stored_name=save_image(data, fmt, request.app.state.uploads),
        data=data,
        image_format=fmt,
        labels=predictor.labels,
        probabilities=probs,
        model_name=b.name,
        model_version=b.version,
        owner=owner,
    )
    return _out(Classifications(session).add(row), request.app.state.settings, session)


@router.post("/api/classify", response_model=Classification)
@router.post("/predict", response_model=Classification, include_in_schema=False)  # the seed tool's form endpoint
def classify(
    request: Request,
    response: Response,
    predictor: PredictorDep,
    session: SessionDep,
    owner: CurrentUser,
    image: Annotated[UploadFile, File(description="The image (JPEG, PNG, TIFF, WebP or FITS).")],
) -> Classification:
    """Classify one image (multipart field ``image``), store it and its answer, return the record."""
    settings = request.app.state.settings
    data = _read_limited(image, settings.max_upload_bytes)
    name = image.filename or "upload"
    t0 = time.perf_counter()
    try:
        pixels = predictor.prepare(data)
    except ImageDecodeError as exc:
        raise ImageDecodeError(f"{name}: {str(exc).removeprefix('<bytes>: ')}") from None
    t1 = time.perf_counter()
    probs = predictor.predict_proba(pixels[None], settings.tta_override)[0]
    t2 = time.perf_counter()
    record = _store(request, session, predictor, name, data, probs, owner)
    t3 = time.perf_counter()
    # Standard Server-Timing header: where each request's time went (bench/serve_latency.py reads it).
    response.headers["Server-Timing"] = (
        f"decode;dur={1000 * (t1 - t0):.2f}, infer;dur={1000 * (t2 - t1):.2f}, store;dur={1000 * (t3 - t2):.2f}"
    )
    return record


class BatchItem(BaseModel):
    file: str
    result: Classification | None = None
    error: str | None = None


class BatchResult(BaseModel):
    items: list[BatchItem]
    classified: int
    failed: int


@router.post("/api/classify/batch", response_model=BatchResult)
def classify_batch(
    request: Request,
    predictor: PredictorDep,
    session: SessionDep,
    owner: CurrentUser,
    images: Annotated[list[UploadFile], File(description="Several images, or one .zip of images.")],
) -> BatchResult:
    """Classify many images (repeat the multipart field ``images``) or the images in one zip.

    Each file gets its own result or error; a bad file never fails the batch.
    """
    settings = request.app.state.settings
    entries: list[tuple[str, bytes | None, str | None]] = []
    for upload in images:
        try:
            data = _read_limited(upload, settings.batch_max_bytes)
        except ImageDecodeError as exc:
            entries.append((upload.filename or "upload", None, str(exc).split(": ", 1)[-1]))
            continue
        if zipfile.is_zipfile(io.BytesIO(data)):
            entries += _zip_entries(data, settings.max_file_bytes, settings.batch_max_bytes)
        else:
            entries.append((upload.filename or "upload", data, None))
    if len(entries) > settings.batch_max_files:
        raise FileTooLargeError(f"batch has {len(entries)} files; the limit is {settings.batch_max_files} per request")
    readable = [i for i, (_, _, err) in enumerate(entries) if err is None]
    outcomes = dict(
        zip(readable, predictor.run([entries[i][1] for i in readable], tta=settings.tta_override), strict=True)
    )
    items = []
    for i, (name, data, err) in enumerate(entries):
        outcome = outcomes.get(i)
        if outcome is None or outcome.error is not None:
            items.append(BatchItem(file=name, error=err or outcome.error))
        else:
            items.append(
                BatchItem(
                    file=name, result=_store(request, session, predictor, name, data, outcome.probabilities, owner)
                )
            )
    failed = sum(i.error is not None for i in items)
    return BatchResult(items=items, classified=len(items) - failed, failed=failed)


def _zip_entries(data: bytes, max_member: int, max_total: int) -> list[tuple[str, bytes | None, str | None]]:
    """Read a zip's files in memory, refusing unsafe names and oversized members per entry."""
    out: list[tuple[str, bytes | None, str | None]] = []
    total = 0
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            name = info.filename
            parts = name.replace("\\", "/").split("/")
            if name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
                out.append((name, None, "unsafe file name in archive (absolute or '..'); skipped"))
                continue
            if info.file_size > max_member or total + info.file_size > max_total:
                out.append((name, None, f"archive member expands to {info.file_size / 1e6:.1f} MB, over the limit"))
                continue
            try:
                member = zf.read(info)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, ValueError) as exc:
                out.append((name, None, f"unreadable archive member ({exc})"))
                continue
            total += len(member)
            out.append((name, member, None))
    return out


@router.get("/api/classifications", response_model=ClassificationPage)
def list_classifications(
    session: SessionDep, settings: SettingsDep, owner: CurrentUser, query: ClassificationQueryDep
) -> ClassificationPage:
    """Stored classifications, newest first by default; a key holder sees only their own."""
    q = dataclasses.replace(query, owner=owner)
    rows, total = Classifications(session).search(q)
    return ClassificationPage(
        items=[_out(r, settings, session) for r in rows], total=total, page=q.page, per_page=q.per_page
    )


@router.get("/api/classifications/{record_id}", response_model=Classification)
def get_classification(
    session: SessionDep, settings: SettingsDep, owner: CurrentUser, record_id: RecordId
) -> Classification:
    """A key holder sees only their own records; anonymous local use sees all."""
    return _out(Classifications(session).get(record_id, owner=owner), settings, session, with_feedback=True)


@router.get(
    "/api/classifications/{record_id}/explanation.png",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}}, 404: {"description": "No such record"}},
)
def explanation(
    request: Request,
    settings: SettingsDep,
    predictor: PredictorDep,
    session: SessionDep,
    owner: CurrentUser,
    record_id: RecordId,
    label: Annotated[
        str | None, Query(max_length=64, description="Class to explain; default: the stored label.")
    ] = None,
) -> FileResponse:
    """Grad-CAM overlay: where the image made the model think ``label``, brightest first.

    Rendered once per record, model version and label, then served from disk.
    """
    row = Classifications(session).get(record_id, owner=owner)
    label = label or row.label
    if label not in predictor.labels:
        raise HTTPException(
            422, f"label {label!r} is not one of the loaded model's classes ({', '.join(predictor.labels)})"
        )
    uploads: Path = request.app.state.uploads
    source = stored_path(uploads, row.stored_name)
    b = predictor.bundle
    key = hashlib.sha256(f"{b.name}\0{b.version}\0{label}\0{settings.tta_override}".encode()).hexdigest()[:16]

    def render():
        return predictor.explain(source, label, settings.tta_override).overlay(b.image_size)

    path = derived_image(uploads / "explanations" / f"{source.stem}-{key}.png", render, "PNG")
    return FileResponse(path, media_type="image/png")


@router.post("/api/classifications/{record_id}/feedback", response_model=Classification)
def add_feedback(
    session: SessionDep, settings: SettingsDep, owner: CurrentUser, record_id: RecordId, body: FeedbackIn
) -> Classification:
    """Store a corrected label; earlier feedback is kept, never overwritten."""
    repo = Classifications(session)
    repo.add_feedback(record_id, body.label, body.comment, owner=owner)
    session.expire_all()
    return _out(repo.get(record_id, owner=owner), settings, session, with_feedback=True)


@router.get("/api/feedback/export", response_class=FileResponse, responses={200: {"content": {"application/zip": {}}}})
def export(request: Request, session: SessionDep, owner: CurrentUser, background: BackgroundTasks) -> FileResponse:
    """Corrected images as a zip of a dataset folder (``manifest.csv`` + ``images/``)."""
    tmp = Path(tempfile.mkdtemp(prefix="astroclassify-export-"))
    background.add_task(shutil.rmtree, tmp, True)
    n = export_feedback(session, request.app.state.uploads, tmp / "feedback", owner=owner)
    archive = shutil.make_archive(str(tmp / "feedback"), "zip", tmp, "feedback")
    return FileResponse(archive, media_type="application/zip", filename="feedback.zip", headers={"X-Images": str(n)})


@router.get("/api/models", response_model=list[ModelInfo])
def models(settings: SettingsDep, predictor: PredictorDep, owner: CurrentUser) -> list[ModelInfo]:
    b = predictor.bundle
    test = b.meta.get("metrics", {}).get("test", {})
    tta = settings.tta_override or b.tta
    return [
        ModelInfo(
            name=b.name,
            version=b.version,
            arch=b.arch,
            labels=list(b.labels),
            image_size=b.image_size,
            temperature=b.temperature_for(tta),
            tta=tta,
            explainable=predictor.has_cam,
            metrics=test,
        )
    ]


@router.get("/health")
def health(predictor: PredictorDep) -> dict:
    return {"status": "ok", "model": predictor.bundle.name}
