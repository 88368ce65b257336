"""Server-rendered pages (Jinja2 autoescaping on; light JavaScript; no build step, no CDN)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from astroclassify.errors import ImageDecodeError, ModelError, NoEmbeddingError, UnknownNameError
from astroclassify.evaluation.metrics import with_interval
from astroclassify.files.sizes import format_bytes
from astroclassify.imaging.stretch import FitsDisplay
from astroclassify.net.urls import http_url
from astroclassify.store.alerts import Alerts
from astroclassify.store.archive import IngestedItems, IngestRuns
from astroclassify.store.classifications import Classifications
from astroclassify.store.images import derived_image, existing_file
from astroclassify.web.credit import record_credit
from astroclassify.web.deps import (
    CallerDep,
    ClassificationQueryDep,
    DecoderDep,
    DiscoveryDep,
    PoolDep,
    RecordId,
    SessionDep,
    SettingsDep,
    StoreDep,
    pool_if_started,
)

router = APIRouter(tags=["pages"], include_in_schema=False)

THUMB_SIZE = 256
PLOTS = {
    "confusion_matrix.png": "Confusion matrix (test split)",
    "reliability.png": "Reliability diagram (test split)",
    "history.png": "Training curves",
}
NAV = (
    ("/", "Classify"),
    ("/gallery", "Gallery"),
    ("/anomalies", "Anomalies"),
    ("/ingest", "Archives"),
    ("/models", "Models"),
    ("/documentation", "Documentation"),
)


def _page_context(request: Request) -> dict:
    """What every page's frame needs: the nav (with the current page) and the default model."""
    pool = pool_if_started(request)
    path = request.url.path
    current = next((href for href, _ in NAV[1:] if path.startswith(href)), "/" if path == "/" else None)
    return {
        "nav": NAV,
        "current": current,
        "default_bundle": pool.get().bundle if pool is not None else None,
    }


templates = Jinja2Templates(
    directory=Path(__file__).resolve().parents[1] / "templates", context_processors=[_page_context]
)
templates.env.filters["http_url"] = http_url  # archive data is never a live link unchecked
templates.env.filters["bytes"] = format_bytes
templates.env.filters["interval"] = with_interval


def error_page(request: Request, status: int, message: str, headers=None) -> HTMLResponse:
    titles = {403: "Not available here", 404: "Not found"}
    context = {"status": status, "title": titles.get(status, "Error"), "message": message}
    return templates.TemplateResponse(request, "error.html", context, status_code=status, headers=headers)


def _browsable(caller) -> None:
    """Pages list everyone's records, so they are for local use, where keys are not required."""
    if caller.key_required:
        raise HTTPException(403, "this server requires API keys; browse records through /api/classifications")


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    return FileResponse(Path(__file__).resolve().parents[1] / "static" / "favicon.svg", media_type="image/svg+xml")


@router.get("/", response_class=HTMLResponse)
def index(request: Request, pool: PoolDep) -> HTMLResponse:
    return templates.TemplateResponse(request, "index.html", {"models": pool.bundles(), "default": pool.default})


@router.get("/documentation", response_class=HTMLResponse)
def documentation(request: Request, pool: PoolDep, settings: SettingsDep) -> HTMLResponse:
    context = {
        "bundle": pool.get().bundle,
        "models": pool.bundles(),
        "settings": settings,
        "low_confidence": settings.low_confidence_threshold,
        # The examples name this server as the browser reached it (host, port and any proxy prefix).
        "base": str(request.base_url).rstrip("/"),
    }
    return templates.TemplateResponse(request, "documentation.html", context)


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, pool: PoolDep, settings: SettingsDep) -> HTMLResponse:
    context = {"models": pool.bundles(), "default": pool.default, "settings": settings}
    return templates.TemplateResponse(request, "models.html", context)


@router.get("/models/{name}", response_class=HTMLResponse)
def model_page(request: Request, pool: PoolDep, settings: SettingsDep, name: str) -> HTMLResponse:
    from astroclassify.learning.loop import model_history

    b = _bundle(pool, name)
    context = {
        "history": model_history(name, models_dir=pool.models_dir),
        "bundle": b,
        "meta": b.meta,
        "plots": {p: caption for p, caption in PLOTS.items() if (b.path / p).is_file()},
        "serving_tta": settings.serving_tta(b.tta),
        "explainable": bool(b.meta.get("explainable", True)),
        "default": pool.default,
    }
    return templates.TemplateResponse(request, "model.html", context)


@router.get("/models/{name}/review", response_class=HTMLResponse)
def review_page(request: Request, pool: PoolDep, caller: CallerDep, name: str) -> HTMLResponse:
    """Suspected label errors the loop kept out of training, for a person to settle (keys: j/k, 1, 2)."""
    from astroclassify.learning.review import pending_reviews

    _browsable(caller)
    b = _bundle(pool, name)
    items = pending_reviews(_home(pool, name))
    return templates.TemplateResponse(request, "review.html", {"bundle": b, "items": items})


@router.post("/models/{name}/review")
def review_submit(
    pool: PoolDep,
    caller: CallerDep,
    name: str,
    sha256: Annotated[str, Form(pattern=r"^[0-9a-f]{64}$")],
    label: Annotated[str, Form(min_length=1, max_length=64)],
) -> RedirectResponse:
    from astroclassify.errors import DataError, RecordNotFoundError
    from astroclassify.learning.review import review_label

    _browsable(caller)
    b = _bundle(pool, name)
    try:
        review_label(_home(pool, name), sha256, label, list(b.labels))
    except (DataError, RecordNotFoundError) as exc:
        raise HTTPException(400 if isinstance(exc, DataError) else 404, str(exc)) from None
    return RedirectResponse(f"/models/{name}/review?settled={sha256[:12]}", status_code=303)


@router.get("/models/{name}/review/image/{sha256}")
def review_file(pool: PoolDep, caller: CallerDep, name: str, sha256: str) -> FileResponse:
    from astroclassify.errors import RecordNotFoundError
    from astroclassify.learning.review import review_image

    _browsable(caller)
    try:
        return FileResponse(review_image(_home(pool, name), sha256))
    except RecordNotFoundError as exc:
        raise HTTPException(404, str(exc)) from None


def _home(pool, name: str) -> Path:
    from astroclassify.errors import ConfigError
    from astroclassify.modelfolder.folder import model_home

    _bundle(pool, name)
    try:
        return model_home(name, models_dir=pool.models_dir)[0]
    except ConfigError:
        raise HTTPException(404, f"model {name!r} has no home to learn in") from None


@router.get("/models/{name}/plots/{plot}")
def model_plot(pool: PoolDep, name: str, plot: str) -> FileResponse:
    path = _bundle(pool, name).path / plot
    if plot not in PLOTS or not path.is_file():
        raise HTTPException(404, "no such plot")
    return FileResponse(path, media_type="image/png")


def _bundle(pool, name: str):
    b = next((b for b in pool.bundles() if b.name == name), None)
    if b is None:
        raise HTTPException(404, f"no model named {name!r} here")
    return b


@router.get("/gallery", response_class=HTMLResponse)
def gallery(
    request: Request, pool: PoolDep, session: SessionDep, caller: CallerDep, q: ClassificationQueryDep
) -> HTMLResponse:
    _browsable(caller)
    rows, total = Classifications(session).search(q)
    pages = max(1, -(-total // q.per_page))
    labels = sorted({label for b in pool.bundles() for label in b.labels})
    context = {"rows": rows, "total": total, "q": q, "pages": pages, "labels": labels}
    return templates.TemplateResponse(request, "gallery.html", context)


@router.get("/classifications/{record_id}", response_class=HTMLResponse)
def detail(
    request: Request,
    pool: PoolDep,
    discovery: DiscoveryDep,
    session: SessionDep,
    settings: SettingsDep,
    caller: CallerDep,
    record_id: RecordId,
) -> HTMLResponse:
    from astroclassify.learning.review import training_label

    _browsable(caller)
    row = Classifications(session).get(record_id)
    try:
        bundle = pool.get(row.model_name).bundle
    except UnknownNameError:
        bundle = None  # the model that answered is no longer served: no explanation, labels from the record
    labels = list(bundle.labels) if bundle else list(row.probabilities)
    latest = row.feedback[-1] if row.feedback else None
    similar = []
    if row.embedding is not None:
        try:
            similar = discovery.similar(row.id, pool.get(), k=8).hits
        except NoEmbeddingError:
            similar = []
    context = {
        "row": row,
        "similar": similar,
        "mark": row.marks[-1].interesting if row.marks else None,
        "labels": labels,
        "latest": latest,
        "credit": record_credit(session, row),
        "explainable": bundle is not None and bool(bundle.meta.get("explainable", True)) and row.label in bundle.labels,
        "sees": bundle.sees if bundle is not None else "",
        "low_confidence": settings.low_confidence_threshold,
        # A correction of an image the model trained on under another label doubts its training data.
        "trained_as": training_label(bundle.path, row.sha256) if bundle is not None and latest is not None else None,
    }
    return templates.TemplateResponse(request, "detail.html", context)


@router.post("/classifications/{record_id}/feedback")
def detail_feedback(
    session: SessionDep,
    caller: CallerDep,
    record_id: RecordId,
    label: Annotated[str, Form(min_length=1, max_length=64)],
    comment: Annotated[str, Form(max_length=2000)] = "",
) -> RedirectResponse:
    _browsable(caller)
    Classifications(session).add_feedback(record_id, label, comment)
    return RedirectResponse(f"/classifications/{record_id}?saved=1#correction", status_code=303)


@router.get("/thumbs/{record_id}.jpg")
def thumbnail(
    pool: PoolDep, store: StoreDep, session: SessionDep, caller: CallerDep, decoder: DecoderDep, record_id: RecordId
) -> FileResponse:
    """A JPEG thumbnail of the stored upload (any format, FITS included), cached on disk."""
    _browsable(caller)
    row = Classifications(session).get(record_id)
    display = None
    if row.stored_name.endswith(".fits"):  # only FITS is shown with the stretch its model saw it with
        # A model no longer served: the default view.
        with contextlib.suppress(UnknownNameError, ModelError):
            display = pool.get(row.model_name).fits_display
    return _thumbnail(store.images, row.stored_name, f"classification {record_id}", decoder, display)


@router.get("/anomalies", response_class=HTMLResponse)
def anomalies_page(request: Request, pool: PoolDep, session: SessionDep, caller: CallerDep) -> HTMLResponse:
    """The stored images ranked by how unusual they look, re-learned from marks; and their map."""
    _browsable(caller)
    predictor = pool.get()
    context = {
        "bundle": predictor.bundle,
        "has_detector": predictor.detector is not None,
        "labels": list(predictor.labels),
        "sources": ["upload", *IngestedItems(session).counts_by_source()],
        "false_alarm_rate": predictor.detector.false_alarm_rate if predictor.detector else None,
        "scored": Classifications(session).count_with_embeddings(predictor.bundle.name),
    }
    return templates.TemplateResponse(request, "anomalies.html", context)


@router.get("/ingest", response_class=HTMLResponse)
def ingest_page(request: Request, session: SessionDep, caller: CallerDep) -> HTMLResponse:
    """Sources, recent runs, alerts and the newest archive images (``astroclassify ingest`` / ``watch``)."""
    _browsable(caller)
    runs = IngestRuns(session).recent(20)
    last_run: dict[str, object] = {}
    for run in runs:
        last_run.setdefault(run.source, run)
    context = {
        "counts": IngestedItems(session).counts_by_source(),
        "last_run": last_run,
        "runs": runs,
        "alerts": Alerts(session).recent(20),
        "items": IngestedItems(session).latest(24),
    }
    return templates.TemplateResponse(request, "ingest.html", context)


@router.get("/ingest/thumbs/{item_id}.jpg")
def ingest_thumbnail(
    store: StoreDep, session: SessionDep, caller: CallerDep, decoder: DecoderDep, item_id: RecordId
) -> FileResponse:
    _browsable(caller)
    item = IngestedItems(session).get(item_id)
    if item is None or not item.stored_name:
        raise HTTPException(404, "no such image")
    return _thumbnail(store.images, item.stored_name, f"archive item {item_id}", decoder)


def _thumbnail(uploads: Path, stored_name: str, what: str, decoder, display: FitsDisplay | None = None) -> FileResponse:
    source = existing_file(uploads, stored_name, what)

    def render():
        from astroclassify.imaging.decode import decode_pil

        try:
            img = decoder.run(decode_pil, source, draft_size=THUMB_SIZE, fits_display=display)
        except ImageDecodeError:
            raise HTTPException(404, f"the stored image of {what} is unreadable") from None
        img.thumbnail((THUMB_SIZE, THUMB_SIZE))
        return img

    lo, hi = (display or FitsDisplay()).percentiles
    view = "" if display in (None, FitsDisplay()) else f"-{display.stretch}-{display.interval}-{lo:g}-{hi:g}"
    thumb = derived_image(uploads / "thumbs" / f"{source.stem}{view}.jpg", render, "JPEG", quality=85)
    return FileResponse(thumb, media_type="image/jpeg")
