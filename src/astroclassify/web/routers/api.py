"""JSON API: classify an upload, describe the model, report health."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Request, UploadFile
from pydantic import BaseModel

from astroclassify.classifier import to_prediction
from astroclassify.errors import ImageDecodeError
from astroclassify.web.deps import PredictorDep

router = APIRouter(tags=["api"])


class Classification(BaseModel):
    file: str
    label: str
    confidence: float
    probabilities: dict[str, float]
    model: str
    model_version: str


class ModelInfo(BaseModel):
    name: str
    version: str
    arch: str
    labels: list[str]
    image_size: int
    temperature: float
    metrics: dict


async def _read_limited(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise ImageDecodeError(f"{upload.filename or 'upload'}: upload is over the {limit / 1e6:.0f} MB limit")
    return data


@router.post("/api/classify", response_model=Classification)
@router.post("/predict", response_model=Classification, include_in_schema=False)  # the seed tool's form endpoint
async def classify(
    request: Request,
    predictor: PredictorDep,
    image: Annotated[UploadFile, File(description="The image (JPEG, PNG, TIFF, WebP or FITS).")],
) -> Classification:
    """Classify one image (multipart field ``image``); the format is judged by content."""
    data = await _read_limited(image, request.app.state.settings.max_file_bytes)
    name = image.filename or "upload"
    try:
        probs = predictor.predict_proba(predictor.prepare(data)[None])[0]
    except ImageDecodeError as exc:
        raise ImageDecodeError(f"{name}: {str(exc).removeprefix('<bytes>: ')}") from None
    pred = to_prediction(name, probs, predictor.labels)
    b = predictor.bundle
    return Classification(**pred.to_dict(), model=b.name, model_version=b.version)


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
