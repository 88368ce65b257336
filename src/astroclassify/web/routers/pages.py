"""Server-rendered pages (Jinja2, no build step, no CDN)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from astroclassify.web.deps import PredictorDep

router = APIRouter(tags=["pages"], include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parents[1] / "templates")


@router.get("/", response_class=HTMLResponse)
def index(request: Request, predictor: PredictorDep) -> HTMLResponse:
    return templates.TemplateResponse(request, "index.html", {"bundle": predictor.bundle})


@router.get("/documentation", response_class=HTMLResponse)
def documentation(request: Request, predictor: PredictorDep) -> HTMLResponse:
    return templates.TemplateResponse(request, "documentation.html", {"bundle": predictor.bundle})
