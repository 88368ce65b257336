"""``create_app``: the ASGI application factory (run with ``uvicorn --factory``)."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from astroclassify.config import Settings, get_settings
from astroclassify.errors import AstroClassifyError, ImageDecodeError, ModelError, StoreError, UnknownNameError
from astroclassify.web.routers import api, pages

__all__ = ["create_app"]

log = logging.getLogger(__name__)
HERE = Path(__file__).parent


def create_app(settings: Settings | None = None, model: str | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from astroclassify.inference.predictor import OnnxPredictor
        from astroclassify.store.db import make_engine, make_sessionmaker

        # Loaded once per process: per request only decoding and resizing remain.
        app.state.predictor = OnnxPredictor(model or settings.default_model)
        settings.home.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.resolved_database_url)
        app.state.sessions = make_sessionmaker(engine)
        app.state.uploads = settings.home / "uploads"
        log.info("serving model %s, database %s", app.state.predictor.bundle.name, engine.url)
        yield
        engine.dispose()

    app = FastAPI(title="astroclassify", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(pages.router)
    app.include_router(api.router)

    @app.exception_handler(AstroClassifyError)
    async def _errors(request: Request, exc: AstroClassifyError) -> JSONResponse:
        if isinstance(exc, ImageDecodeError):
            status = 413 if "over the" in str(exc) else 422
        elif isinstance(exc, UnknownNameError) or (isinstance(exc, StoreError) and "not found" in str(exc)):
            status = 404
        elif isinstance(exc, ModelError):
            status = 500
        else:
            status = 400
        return JSONResponse({"error": {"type": type(exc).__name__, "message": str(exc)}}, status_code=status)

    return app
