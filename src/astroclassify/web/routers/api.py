"""JSON API: classify uploads, browse stored classifications, take feedback, describe the models.

Routes are plain ``def``: decoding and inference are CPU work, which FastAPI runs in its
thread pool instead of blocking the event loop. Who may call what, and how large a body may
be, was settled by ``web.guard.RequestGuard`` before any of this runs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, File, Header, HTTPException, Query, Response, UploadFile
from fastapi.responses import FileResponse

from astroclassify.config import Settings
from astroclassify.errors import FileTooLargeError, ImageDecodeError, RecordNotFoundError, UnknownNameError
from astroclassify.imaging.decode import preview_jpeg
from astroclassify.inference.uploads import classify_batch as run_batch
from astroclassify.inference.uploads import classify_upload
from astroclassify.store.classifications import Classifications
from astroclassify.store.export import export_feedback
from astroclassify.store.images import MEDIA_TYPES, derived_image, existing_file
from astroclassify.web.credit import record_credit
from astroclassify.web.deps import (
    ClassificationQueryDep,
    CurrentUser,
    DecoderDep,
    PoolDep,
    RecordId,
    ServedModelDep,
    SessionDep,
    SettingsDep,
    StoreDep,
    known_query_only,
)
from astroclassify.web.downloads import dataset_zip
from astroclassify.web.schemas import (
    BatchItem,
    BatchResult,
    ClassificationOut,
    ClassificationPage,
    FeedbackIn,
    ModelInfo,
)
from astroclassify.web.uploads import batch_entries, count_batch_entries, read_upload

__all__ = ["router", "seed_router"]

router = APIRouter(prefix="/api", tags=["api"], dependencies=[Depends(known_query_only)])
seed_router = APIRouter(tags=["api"])  # the seed tool's form endpoint, /predict (the same as /api/classify)

IdempotencyKey = Annotated[
    str | None,
    Header(
        max_length=255,
        description="Send the same key when retrying an upload: the first request's record comes back instead of a second one.",
    ),
]


def classification_out(row, settings: Settings, session, **kw) -> ClassificationOut:
    """The API's view of a record, with its archive credit and the server's low-confidence threshold."""
    return ClassificationOut.of(
        row, credit=record_credit(session, row), low_confidence_below=settings.low_confidence_threshold, **kw
    )


@router.post("/classify", response_model=ClassificationOut, summary="Classify one image")
@seed_router.post("/predict", response_model=ClassificationOut, summary="Classify one image (the seed tools' /predict)")
def classify(
    response: Response,
    served: ServedModelDep,
    store: StoreDep,
    session: SessionDep,
    settings: SettingsDep,
    decoder: DecoderDep,
    owner: CurrentUser,
    image: Annotated[UploadFile, File(description="The image (JPEG, PNG, TIFF, WebP or FITS).")],
    idempotency_key: IdempotencyKey = None,
) -> ClassificationOut:
    """Classify one image (multipart field ``image``), store it and its answer, return the record.

    Choose the model with a ``model`` form field or query parameter. An upload that repeats
    an earlier one (same ``Idempotency-Key``, or the same bytes, model and TTA) returns the
    earlier record with ``already_stored: true``.
    """
    data = read_upload(image, settings.max_upload_bytes)
    result = classify_upload(
        session,
        store.images,
        served.predictor,
        data,
        name=image.filename or "upload",
        tta=served.tta,
        owner=owner,
        idempotency_key=idempotency_key,
        limits=settings.upload_limits,
        run=decoder.run,
    )
    # Standard Server-Timing header: where each request's time went (bench/serve_latency.py reads it).
    response.headers["Server-Timing"] = ", ".join(f"{k};dur={v:.2f}" for k, v in result.timings.items())
    return classification_out(result.record, settings, session, already_stored=result.already_stored)


@router.post(
    "/preview",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, 422: {"description": "Not an image we can decode"}},
)
def preview(
    served: ServedModelDep,
    settings: SettingsDep,
    decoder: DecoderDep,
    image: Annotated[UploadFile, File(description="The image (FITS, TIFF or any format classify takes).")],
) -> Response:
    """A JPEG of an image before it is classified, FITS stretched as the chosen model shows it.

    For files a browser cannot display (FITS, 16-bit TIFF); nothing is stored. A model that
    crops or frames its pictures has the box it will see outlined in white.
    """
    predictor = served.predictor
    data = read_upload(image, settings.max_upload_bytes)
    try:
        jpeg = decoder.run(
            preview_jpeg,
            data,
            fits_display=predictor.fits_display,
            limits=settings.upload_limits,
            framing=predictor.framing,
            crop=predictor.crop,
        )
    except ImageDecodeError as exc:
        raise type(exc)(f"{image.filename or 'upload'}: {str(exc).removeprefix('<bytes>: ')}") from None
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


@router.post("/classify/batch", response_model=BatchResult, summary="Classify many images, or a zip of them")
def classify_batch(
    served: ServedModelDep,
    store: StoreDep,
    session: SessionDep,
    settings: SettingsDep,
    decoder: DecoderDep,
    owner: CurrentUser,
    images: Annotated[list[UploadFile], File(description="Several images, or one .zip of images.")],
) -> BatchResult:
    """Classify many images (repeat the multipart field ``images``) or the images in one zip.

    Each file gets its own result or error; a bad file never fails the batch. Every file is
    held to the single-upload limit, and files are read, decoded and stored one at a time,
    so a batch never sits in memory whole.
    """
    n = count_batch_entries(images, settings.batch_max_files)
    if n > settings.batch_max_files:
        raise FileTooLargeError(f"batch has {n} files; the limit is {settings.batch_max_files} per request")
    outcomes = run_batch(
        session,
        store.images,
        served.predictor,
        batch_entries(
            images,
            max_file=settings.max_upload_bytes,
            max_total=settings.batch_max_bytes,
            max_files=settings.batch_max_files,
        ),
        tta=served.tta,
        owner=owner,
        limits=settings.upload_limits,
        run=decoder.run,
    )
    items = [
        BatchItem(file=o.name, error=o.error)
        if o.result is None
        else BatchItem(
            file=o.name,
            result=classification_out(o.result.record, settings, session, already_stored=o.result.already_stored),
        )
        for o in outcomes
    ]
    failed = sum(i.error is not None for i in items)
    return BatchResult(items=items, classified=len(items) - failed, failed=failed)


@router.get("/classifications", response_model=ClassificationPage)
def list_classifications(
    session: SessionDep, settings: SettingsDep, owner: CurrentUser, query: ClassificationQueryDep
) -> ClassificationPage:
    """Stored classifications, newest first by default; a key holder sees only their own."""
    q = dataclasses.replace(query, owner=owner)
    rows, total = Classifications(session).search(q)
    return ClassificationPage(
        items=[classification_out(r, settings, session) for r in rows], total=total, page=q.page, per_page=q.per_page
    )


@router.get("/classifications/{record_id}", response_model=ClassificationOut)
def get_classification(
    session: SessionDep, settings: SettingsDep, owner: CurrentUser, record_id: RecordId
) -> ClassificationOut:
    """A key holder sees only their own records; anonymous local use sees all."""
    row = Classifications(session).get(record_id, owner=owner)
    return classification_out(row, settings, session, with_feedback=True)


@router.get(
    "/classifications/{record_id}/image",
    response_class=FileResponse,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "application/fits": {}}}},
)
def stored_image(store: StoreDep, session: SessionDep, owner: CurrentUser, record_id: RecordId) -> FileResponse:
    """The image as it was uploaded (full size, original format)."""
    row = Classifications(session).get(record_id, owner=owner)
    path = existing_file(store.images, row.stored_name, f"classification {record_id}")
    media = MEDIA_TYPES.get(path.suffix.lstrip("."), "application/octet-stream")
    inline = media.startswith("image/") and media != "image/tiff"
    return FileResponse(
        path,
        media_type=media,
        filename=Path(row.filename).name or path.name,
        content_disposition_type="inline" if inline else "attachment",
        headers={"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox"},
    )


@router.get(
    "/classifications/{record_id}/explanation.png",
    response_class=FileResponse,
    responses={200: {"content": {"image/png": {}}}, 404: {"description": "No such record"}},
)
def explanation(
    store: StoreDep,
    settings: SettingsDep,
    pool: PoolDep,
    decoder: DecoderDep,
    session: SessionDep,
    owner: CurrentUser,
    record_id: RecordId,
    label: Annotated[
        str | None, Query(max_length=64, description="Class to explain; default: the stored label.")
    ] = None,
) -> FileResponse:
    """Grad-CAM overlay: where the image made the model think ``label``, brightest first.

    Computed by the model that answered, with the views it used; rendered once per record,
    model version and label, then served from disk.
    """
    row = Classifications(session).get(record_id, owner=owner)
    try:
        predictor = pool.get(row.model_name)
    except UnknownNameError:
        raise RecordNotFoundError(f"model {row.model_name!r}, which answered this record, is not served here") from None
    label = label or row.label
    if label not in predictor.labels:
        raise HTTPException(
            422,
            f"label {label!r} is not one of model {predictor.bundle.name!r}'s classes ({', '.join(predictor.labels)})",
        )
    uploads = store.images
    source = existing_file(uploads, row.stored_name, f"classification {record_id}")
    tta = row.tta or settings.serving_tta(predictor.bundle.tta)

    def render():
        return decoder.run(lambda: predictor.explain(source, label, tta).overlay())

    name = f"{source.stem}-{predictor.explanation_key(label, tta)}.png"
    path = derived_image(uploads / "explanations" / name, render, "PNG")
    return FileResponse(path, media_type="image/png")


@router.post("/classifications/{record_id}/feedback", response_model=ClassificationOut)
def add_feedback(
    session: SessionDep, settings: SettingsDep, owner: CurrentUser, record_id: RecordId, body: FeedbackIn
) -> ClassificationOut:
    """Store a corrected label; earlier feedback is kept, never overwritten."""
    repo = Classifications(session)
    repo.add_feedback(record_id, body.label, body.comment, owner=owner)
    session.expire_all()
    return classification_out(repo.get(record_id, owner=owner), settings, session, with_feedback=True)


@router.get("/feedback/export", response_class=FileResponse, responses={200: {"content": {"application/zip": {}}}})
def export(store: StoreDep, owner: CurrentUser, background: BackgroundTasks) -> FileResponse:
    """Corrected images as a zip of a dataset folder (``manifest.csv`` + ``images/``)."""
    return dataset_zip(background, "feedback", lambda out: export_feedback(store, out, owner=owner))


@router.get("/models", response_model=list[ModelInfo])
def models(settings: SettingsDep, pool: PoolDep, owner: CurrentUser) -> list[ModelInfo]:
    """Every model this server can use; name one with the ``model`` field of a classify request."""
    out = []
    for b in pool.bundles():
        tta = settings.serving_tta(b.tta)
        out.append(
            ModelInfo(
                name=b.name,
                version=b.version,
                arch=b.arch,
                labels=list(b.labels),
                image_size=b.image_size,
                temperature=b.temperature_for(tta),
                tta=tta,
                explainable=bool(b.meta.get("explainable", True)),
                default=b.name == pool.default,
                metrics=b.meta.get("metrics", {}).get("test", {}),
            )
        )
    return out
