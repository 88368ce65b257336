"""``create_app``: the ASGI application factory (run with ``uvicorn --factory``)."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from astroclassify.config import Settings, get_settings
from astroclassify.errors import (
    AstroClassifyError,
    FileTooLargeError,
    ImageDecodeError,
    ModelError,
    RecordNotFoundError,
    UnknownNameError,
)
from astroclassify.web.ratelimit import RateLimiter
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
    app.state.require_key = bool(settings.require_api_key)
    app.state.limiter = RateLimiter(settings.rate_limit_per_minute)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(pages.router)
    app.include_router(api.router)

    @app.exception_handler(AstroClassifyError)
    async def _errors(request: Request, exc: AstroClassifyError) -> JSONResponse:
        if isinstance(exc, FileTooLargeError):
            status = 413
        elif isinstance(exc, ImageDecodeError):
            status = 422
        elif isinstance(exc, UnknownNameError | RecordNotFoundError):
            status = 404
        elif isinstance(exc, ModelError):
            status = 500
        else:
            status = 400
        return JSONResponse({"error": {"type": type(exc).__name__, "message": str(exc)}}, status_code=status)

    # Every error, ours or the framework's, has one shape: {"error": {"type", "message"}}.
    @app.exception_handler(HTTPException)
    async def _http_errors(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": {"type": "HTTPError", "message": str(exc.detail)}},
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_errors(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return JSONResponse(
            {"error": {"type": "ValidationError", "message": message, "details": jsonable(exc.errors())}},
            status_code=422,
        )

    return app


def jsonable(errors: list) -> list:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(errors, custom_encoder={bytes: lambda b: f"<{len(b)} bytes>"})
