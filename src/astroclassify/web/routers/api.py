"""JSON API: classify uploads, browse stored classifications, take feedback, describe the model.

Routes are plain ``def``: decoding and inference are CPU work, which FastAPI runs in its
thread pool instead of blocking the event loop.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Annotated

from fastapi import APIRouter, File, Query, Request, UploadFile
from pydantic import BaseModel, Field

from astroclassify.errors import ImageDecodeError
from astroclassify.imaging.decode import sniff_format
from astroclassify.store.images import save_image
from astroclassify.store.repository import ClassificationQuery, Classifications
from astroclassify.store.tables import Classification as ClassificationRow
from astroclassify.web.deps import PredictorDep, SessionDep

router = APIRouter(tags=["api"])


class FeedbackOut(BaseModel):
    label: str
    comment: str
    created_at: dt.datetime


class Classification(BaseModel):
    id: int
    file: str
    label: str
    confidence: float
    probabilities: dict[str, float]
    model: str
    model_version: str
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
    metrics: dict


def _out(row: ClassificationRow, with_feedback: bool = False) -> Classification:
    return Classification(
        id=row.id,
        file=row.filename,
        label=row.label,
        confidence=row.confidence,
        probabilities=row.probabilities,
        model=row.model_name,
        model_version=row.model_version,
        created_at=row.created_at,
        feedback=[FeedbackOut(label=f.label, comment=f.comment, created_at=f.created_at) for f in row.feedback]
        if with_feedback
        else [],
    )


def _read_limited(upload: UploadFile, limit: int) -> bytes:
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise ImageDecodeError(f"{upload.filename or 'upload'}: upload is over the {limit / 1e6:.0f} MB limit")
    return data


@router.post("/api/classify", response_model=Classification)
@router.post("/predict", response_model=Classification, include_in_schema=False)  # the seed tool's form endpoint
def classify(
    request: Request,
    predictor: PredictorDep,
    session: SessionDep,
    image: Annotated[UploadFile, File(description="The image (JPEG, PNG, TIFF, WebP or FITS).")],
) -> Classification:
    """Classify one image (multipart field ``image``), store it and its answer, return the record."""
    data = _read_limited(image, request.app.state.settings.max_file_bytes)
    name = (image.filename or "upload")[:255]
    try:
        probs = predictor.predict_proba(predictor.prepare(data)[None])[0]
    except ImageDecodeError as exc:
        raise ImageDecodeError(f"{name}: {str(exc).removeprefix('<bytes>: ')}") from None
    fmt = sniff_format(data) or "unknown"
    best = int(probs.argmax())
    b = predictor.bundle
    row = ClassificationRow(
        filename=name,
        stored_name=save_image(data, fmt, request.app.state.uploads),
        sha256=hashlib.sha256(data).hexdigest(),
        image_format=fmt,
        label=predictor.labels[best],
        confidence=float(probs[best]),
        probabilities={label: float(p) for label, p in zip(predictor.labels, probs, strict=True)},
        model_name=b.name,
        model_version=b.version,
    )
    return _out(Classifications(session).add(row))


@router.get("/api/classifications", response_model=ClassificationPage)
def list_classifications(
    session: SessionDep,
    label: str | None = None,
    min_confidence: Annotated[float, Query(ge=0, le=1)] = 0.0,
    max_confidence: Annotated[float, Query(ge=0, le=1)] = 1.0,
    sort: Annotated[str, Query(pattern="^(newest|oldest|confidence|least_confident)$")] = "newest",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=200)] = 24,
) -> ClassificationPage:
    q = ClassificationQuery(label, min_confidence, max_confidence, None, sort, page, per_page)
    rows, total = Classifications(session).search(q)
    return ClassificationPage(items=[_out(r) for r in rows], total=total, page=page, per_page=per_page)


@router.get("/api/classifications/{record_id}", response_model=Classification)
def get_classification(session: SessionDep, record_id: int) -> Classification:
    return _out(Classifications(session).get(record_id), with_feedback=True)


@router.post("/api/classifications/{record_id}/feedback", response_model=Classification)
def add_feedback(session: SessionDep, record_id: int, body: FeedbackIn) -> Classification:
    """Store a corrected label; earlier feedback is kept, never overwritten."""
    repo = Classifications(session)
    repo.add_feedback(record_id, body.label, body.comment)
    session.expire_all()
    return _out(repo.get(record_id), with_feedback=True)


@router.get("/api/models", response_model=list[ModelInfo])
def models(predictor: PredictorDep) -> list[ModelInfo]:
    b = predictor.bundle
    test = b.meta.get("metrics", {}).get("test", {})
    return [
        ModelInfo(
            name=b.name,
            version=b.version,
            arch=b.arch,
            labels=list(b.labels),
            image_size=b.image_size,
            temperature=b.temperature,
            metrics=test,
        )
    ]


@router.get("/health")
def health(predictor: PredictorDep) -> dict:
    return {"status": "ok", "model": predictor.bundle.name}
