"""``create_app``: the ASGI application factory (run with ``uvicorn --factory``)."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from astroclassify.config import Settings, get_settings
from astroclassify.errors import AstroClassifyError, ImageDecodeError, ModelError, UnknownNameError
from astroclassify.web.routers import api, pages

__all__ = ["create_app"]

log = logging.getLogger(__name__)
HERE = Path(__file__).parent


def create_app(settings: Settings | None = None, model: str | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from astroclassify.inference.predictor import OnnxPredictor

        # Loaded once per process: per request only decoding and resizing remain.
        app.state.predictor = OnnxPredictor(model or settings.default_model)
        log.info("serving model %s", app.state.predictor.bundle.name)
        yield

    app = FastAPI(title="astroclassify", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(pages.router)
    app.include_router(api.router)

    @app.exception_handler(AstroClassifyError)
    async def _errors(request: Request, exc: AstroClassifyError) -> JSONResponse:
        status = (
            422
            if isinstance(exc, ImageDecodeError)
            else 404
            if isinstance(exc, UnknownNameError)
            else 500
            if isinstance(exc, ModelError)
            else 400
        )
        if isinstance(exc, ImageDecodeError) and "over the" in str(exc):
            status = 413
        return JSONResponse({"error": {"type": type(exc).__name__, "message": str(exc)}}, status_code=status)

    return app
