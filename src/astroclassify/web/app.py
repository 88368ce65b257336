"""``create_app``: the ASGI application factory (run with ``uvicorn --factory``)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from astroclassify._version import __version__
from astroclassify.config import Settings, get_settings
from astroclassify.errors import (
    AstroClassifyError,
    FileTooLargeError,
    IdempotencyKeyReusedError,
    ImageDecodeError,
    ModelError,
    NoEmbeddingError,
    RecordNotFoundError,
    StoreFullError,
    UnknownNameError,
)
from astroclassify.installation import Installation
from astroclassify.store.full import FULL_MESSAGE, is_storage_full
from astroclassify.web.decoding import DecodePool
from astroclassify.web.guard import RequestGuard
from astroclassify.web.ratelimit import RateLimiter, SharedRateLimiter
from astroclassify.web.routers import api, discovery, docs, health, pages, sharing

__all__ = ["AnswerEveryError", "SafeJSONResponse", "create_app"]

log = logging.getLogger(__name__)
HERE = Path(__file__).parent


class SafeJSONResponse(JSONResponse):
    """JSON that survives any text: a lone surrogate (``"a\\ud800b"``) is written escaped.

    Starlette encodes with ``ensure_ascii=False`` and then UTF-8, which fails on a lone
    surrogate from a client's own input and turned a 422 into a plain-text 500.
    """

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The web app and REST API, for one installation's settings.

    Parameters
    ----------
    settings : Settings, optional
        Default: read from the environment now. Its ``default_model`` (and ``default_detector``)
        answers requests that name no model (``Settings.serving`` sets them).
    """
    settings = settings or get_settings()
    installation = Installation(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from astroclassify.store.classifications import stored_names
        from astroclassify.store.images import sweep_orphans

        # Loaded once per process: per request only decoding and resizing remain.
        app.state.pool = installation.pool()
        app.state.store = store = installation.open_store()
        app.state.sessions = store.sessions  # the guard checks keys before a route runs
        with store.session() as session:  # uploads saved before a crash, never committed
            sweep_orphans(store.images, stored_names(session))
        app.state.discovery = installation.discovery(store)
        with contextlib.suppress(ModelError):  # a broken default: the others serve, /health names it
            app.state.discovery.warm_up(app.state.pool.get())  # its arrays, read in the background
        names = [e.name for e in app.state.pool.entries()]
        log.info("serving models %s (default %s), database %s", names, app.state.pool.default, store.engine.url)
        yield
        store.close()
        app.state.decoder.shutdown()

    app = FastAPI(
        title="astroclassify",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # served from the package (routers/docs.py): no CDN
        redoc_url=None,
        default_response_class=SafeJSONResponse,
    )
    app.state.settings = settings
    app.state.installation = installation
    app.state.limiter = (
        SharedRateLimiter(settings.rate_limit_store, settings.rate_limit_per_minute)
        if settings.rate_limit_store
        else RateLimiter(settings.rate_limit_per_minute)
    )
    app.state.decoder = DecodePool(settings.max_concurrent_decodes or os.cpu_count() or 1)
    app.add_middleware(RequestGuard, settings=settings, limiter=app.state.limiter)
    app.add_middleware(AnswerEveryError)  # outermost of ours: nothing escapes to the server
    app.mount(
        "/static/apidocs", StaticFiles(directory=docs.ASSETS), name="apidocs"
    )  # before /static, which would shadow it
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for router in (
        pages.router,
        api.router,
        discovery.router,
        sharing.router,
        api.seed_router,
        health.router,
        docs.router,
    ):
        app.include_router(router)
    _add_error_handlers(app)
    app.openapi = lambda: _openapi_with_keys(app)  # type: ignore[method-assign]
    return app


def _openapi_with_keys(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI description, saying that requests carry an API key (Swagger UI's Authorize button).

    Keys are checked by ``RequestGuard`` before a body is read, not by route dependencies,
    so FastAPI cannot see them: the scheme is declared here, once, for every operation.
    """
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(
            title=app.title,
            version=app.version,
            routes=app.routes,
            description="Classify astronomical images and browse what was classified. "
            "[Back to the site](/) · [the same reference in ReDoc](/redoc)",
        )
        schema.setdefault("components", {})["securitySchemes"] = {
            "APIKey": {
                "type": "apiKey",
                "in": "header",
                "name": "X-API-Key",
                "description": "Required for clients on other machines unless the server says otherwise "
                "(`astroclassify keys create NAME`).",
            }
        }
        schema["security"] = [{"APIKey": []}, {}]  # {}: a key is optional on this machine
        app.openapi_schema = schema
    return app.openapi_schema


class AnswerEveryError:
    """Answer any exception that reaches here with JSON (507 for a full disk, else 500).

    Starlette's handler for ``Exception`` answers and then re-raises, so uvicorn logged
    "Exception in ASGI application" and closed the keep-alive connection: clients saw resets.
    Here the error is logged once and the connection stays usable. Once a response has
    started, nothing more can be sent: the error is logged and the response ends.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            full = is_storage_full(exc)
            if full:
                log.warning("%s %s: %s", scope["method"], scope["path"], FULL_MESSAGE)
            else:
                log.error("unhandled error on %s %s", scope["method"], scope["path"], exc_info=exc)
            if started:
                return
            response = (
                _error(507, "StoreFullError", FULL_MESSAGE)
                if full
                else _error(500, "InternalError", "internal server error; the server log has the details")
            )
            await response(scope, receive, send)


def _status(exc: AstroClassifyError) -> int:
    if isinstance(exc, StoreFullError):
        return 507
    if isinstance(exc, FileTooLargeError):
        return 413
    if isinstance(exc, ImageDecodeError | IdempotencyKeyReusedError):
        return 422
    if isinstance(exc, UnknownNameError | RecordNotFoundError):
        return 404
    if isinstance(exc, NoEmbeddingError):
        return 409
    if isinstance(exc, ModelError):
        return 503  # installed but unable to serve now (a damaged home): the other models still answer
    return 400


def _error(status: int, kind: str, message: str, headers=None, **extra) -> SafeJSONResponse:
    return SafeJSONResponse({"error": {"type": kind, "message": message, **extra}}, status_code=status, headers=headers)


def _wants_page(request: Request) -> bool:
    """A person's browser asking for a page (not the API, not a script)."""
    return not request.url.path.startswith(("/api/", "/static/")) and "text/html" in request.headers.get("accept", "")


def _add_error_handlers(app: FastAPI) -> None:
    """Every error, ours or the framework's, has one shape: ``{"error": {"type", "message"}}``.

    A browser asking for a missing page gets that page's HTML instead of raw JSON.
    """

    @app.exception_handler(AstroClassifyError)
    async def _ours(request: Request, exc: AstroClassifyError) -> Response:
        status = _status(exc)
        if status == 404 and _wants_page(request):
            return pages.error_page(request, status, str(exc))
        return _error(status, type(exc).__name__, str(exc))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        if exc.status_code in (403, 404) and _wants_page(request):
            message = f"There is no page at {request.url.path}." if exc.detail == "Not Found" else str(exc.detail)
            return pages.error_page(request, exc.status_code, message, headers=exc.headers)
        return _error(exc.status_code, "HTTPError", str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        # The client's input is not echoed back: it may be huge, binary or not even valid text.
        details = [{k: v for k, v in e.items() if k in ("type", "loc", "msg")} for e in exc.errors()]
        first = details[0] if details else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else "invalid request"
        return _error(422, "ValidationError", message, details=details)

    # Anything else (a bug, a full disk seen by the database) is answered by AnswerEveryError.
