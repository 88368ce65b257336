"""Server-rendered pages (Jinja2 autoescaping on; light JavaScript; no build step, no CDN)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from astroclassify.errors import ImageDecodeError, StoreError
from astroclassify.store.images import derived_image, stored_path
from astroclassify.store.ingested import Alerts, IngestedItems, IngestRuns
from astroclassify.store.repository import Classifications
from astroclassify.web.credit import record_credit
from astroclassify.web.deps import ClassificationQueryDep, PredictorDep, RecordId, SessionDep

router = APIRouter(tags=["pages"], include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parents[1] / "templates")

THUMB_SIZE = 256


def _browsable(request: Request) -> None:
    """Pages list everyone's records, so they are for local use, where keys are not required."""
    if request.app.state.require_key:
        raise HTTPException(403, "this server requires API keys; browse records through /api/classifications")


@router.get("/", response_class=HTMLResponse)
def index(request: Request, predictor: PredictorDep) -> HTMLResponse:
    return templates.TemplateResponse(request, "index.html", {"bundle": predictor.bundle})


@router.get("/documentation", response_class=HTMLResponse)
def documentation(request: Request, predictor: PredictorDep) -> HTMLResponse:
    settings = request.app.state.settings
    context = {"bundle": predictor.bundle, "settings": settings, "low_confidence": settings.low_confidence_threshold}
    return templates.TemplateResponse(request, "documentation.html", context)


@router.get("/models", response_class=HTMLResponse)
def model_page(request: Request, predictor: PredictorDep) -> HTMLResponse:
    b = predictor.bundle
    plots = [p for p in ("confusion_matrix.png", "reliability.png", "history.png") if (b.path / p).is_file()]
    tta = request.app.state.settings.tta_override
    context = {
        "bundle": b,
        "meta": b.meta,
        "plots": plots,
        "serving_tta": tta or b.tta,
        "explainable": predictor.has_cam,
    }
    return templates.TemplateResponse(request, "models.html", context)


@router.get("/models/plots/{name}")
def model_plot(predictor: PredictorDep, name: str) -> FileResponse:
    if name not in {"confusion_matrix.png", "reliability.png", "history.png"}:
        raise HTTPException(404, "no such plot")
    path = predictor.bundle.path / name
    if not path.is_file():
        raise HTTPException(404, "no such plot")
    return FileResponse(path, media_type="image/png")


@router.get("/gallery", response_class=HTMLResponse)
def gallery(request: Request, predictor: PredictorDep, session: SessionDep, q: ClassificationQueryDep) -> HTMLResponse:
    _browsable(request)
    rows, total = Classifications(session).search(q)
    pages = max(1, -(-total // q.per_page))
    context = {"bundle": predictor.bundle, "rows": rows, "total": total, "q": q, "pages": pages}
    return templates.TemplateResponse(request, "gallery.html", context)


@router.get("/classifications/{record_id}", response_class=HTMLResponse)
def detail(request: Request, predictor: PredictorDep, session: SessionDep, record_id: RecordId) -> HTMLResponse:
    _browsable(request)
    try:
        row = Classifications(session).get(record_id)
    except StoreError:
        raise HTTPException(404, f"classification {record_id} not found") from None
    context = {
        "bundle": predictor.bundle,
        "row": row,
        "credit": record_credit(session, row),
        "explainable": predictor.has_cam and row.label in predictor.labels,
        "low_confidence": request.app.state.settings.low_confidence_threshold,
    }
    return templates.TemplateResponse(request, "detail.html", context)


@router.post("/classifications/{record_id}/feedback")
def detail_feedback(
    request: Request,
    session: SessionDep,
    record_id: RecordId,
    label: Annotated[str, Form(min_length=1, max_length=64)],
    comment: Annotated[str, Form(max_length=2000)] = "",
) -> RedirectResponse:
    _browsable(request)
    Classifications(session).add_feedback(record_id, label, comment)
    return RedirectResponse(f"/classifications/{record_id}?saved=1", status_code=303)


@router.get("/thumbs/{record_id}.jpg")
def thumbnail(request: Request, session: SessionDep, record_id: RecordId) -> FileResponse:
    """A JPEG thumbnail of the stored upload (any format, FITS included), cached on disk."""
    _browsable(request)
    try:
        row = Classifications(session).get(record_id)
    except StoreError:
        raise HTTPException(404, "no such image") from None
    return _thumbnail(request.app.state.uploads, row.stored_name)


@router.get("/ingest", response_class=HTMLResponse)
def ingest_page(request: Request, predictor: PredictorDep, session: SessionDep) -> HTMLResponse:
    """Sources, recent runs, alerts and the newest archive images (``astroclassify ingest`` / ``watch``)."""
    _browsable(request)
    runs = IngestRuns(session).recent(20)
    last_run = {}
    for run in runs:
        last_run.setdefault(run.source, run)
    context = {
        "bundle": predictor.bundle,
        "counts": IngestedItems(session).counts_by_source(),
        "last_run": last_run,
        "runs": runs,
        "alerts": Alerts(session).recent(20),
        "items": IngestedItems(session).latest(24),
    }
    return templates.TemplateResponse(request, "ingest.html", context)


@router.get("/ingest/thumbs/{item_id}.jpg")
def ingest_thumbnail(request: Request, session: SessionDep, item_id: RecordId) -> FileResponse:
    _browsable(request)
    item = IngestedItems(session).get(item_id)
    if item is None or not item.stored_name:
        raise HTTPException(404, "no such image")
    return _thumbnail(request.app.state.uploads, item.stored_name)


def _thumbnail(uploads: Path, stored_name: str) -> FileResponse:
    source = stored_path(uploads, stored_name)

    def render():
        from astroclassify.imaging.decode import decode_pil

        try:
            img = decode_pil(source)
        except ImageDecodeError:
            raise HTTPException(404, "stored image is unreadable") from None
        img.thumbnail((THUMB_SIZE, THUMB_SIZE))
        return img

    thumb = derived_image(uploads / "thumbs" / f"{source.stem}.jpg", render, "JPEG", quality=85)
    return FileResponse(thumb, media_type="image/jpeg")
