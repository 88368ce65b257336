"""Annotated dependencies shared by the routers: the only readers of the app's state.

A route names what it needs (the store, the model a request chose with the views this server
applies, the caller, the settings) and never reads ``request.app.state`` itself, so the rules
"no model named means the default" and "the server's TTA, else the model's own" live here once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Form, Path, Query, Request

from astroclassify.config import Settings
from astroclassify.discovery.collection import Discovery
from astroclassify.inference.pool import PredictorPool
from astroclassify.inference.predictor import OnnxPredictor
from astroclassify.store import Session, Store
from astroclassify.store.classifications import ClassificationQuery
from astroclassify.web.decoding import DecodePool
from astroclassify.web.guard import Caller


def known_query_only(request: Request) -> None:
    """422 for a query parameter the route does not take: ``?page_size=`` on a route that reads
    ``per_page`` was silently ignored. The API routers depend on it; pages do not."""
    from fastapi import HTTPException

    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = _query_names(dependant)
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "none"
        raise HTTPException(422, f"unknown query parameter(s): {', '.join(unknown)}; this endpoint takes: {takes}")


def _query_names(dependant: Any) -> set[str]:
    """The query parameters a route reads, its dependencies' included (FastAPI's ``Dependant`` tree)."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _pool(request: Request) -> PredictorPool:
    return request.app.state.pool


def pool_if_started(request: Request) -> PredictorPool | None:
    """The pool, or None before the app has started (an error page rendered that early)."""
    return getattr(request.app.state, "pool", None)


def _store(request: Request) -> Store:
    return request.app.state.store


def _discovery(request: Request) -> Discovery:
    return request.app.state.discovery


def _session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _decoder(request: Request) -> DecodePool:
    return request.app.state.decoder


def _caller(request: Request) -> Caller:
    """Set by ``RequestGuard`` on every request, after it checked the key and the rate limit."""
    return request.state.caller


PoolDep = Annotated[PredictorPool, Depends(_pool)]
StoreDep = Annotated[Store, Depends(_store)]
DiscoveryDep = Annotated[Discovery, Depends(_discovery)]
SettingsDep = Annotated[Settings, Depends(_settings)]
# Images are decoded on a few dedicated threads (each decode can take hundreds of MB).
DecoderDep = Annotated[DecodePool, Depends(_decoder)]
CallerDep = Annotated[Caller, Depends(_caller)]
# Ids beyond SQLite's 64-bit INTEGER overflow inside the driver (a 500 found by fuzzing): 422 instead.
RecordId = Annotated[int, Path(ge=1, le=2**63 - 1, description="A stored classification's id.")]
SessionDep = Annotated[Session, Depends(_session)]


def _current_user(caller: CallerDep) -> str | None:
    """The caller's owner id (``key:<id>``), or None for anonymous use."""
    return caller.owner


CurrentUser = Annotated[str | None, Depends(_current_user)]


def _classification_query(
    label: Annotated[str | None, Query(max_length=64)] = None,
    min_confidence: Annotated[float, Query(ge=0, le=1)] = 0.0,
    max_confidence: Annotated[float, Query(ge=0, le=1)] = 1.0,
    sort: Annotated[str, Query(pattern="^(newest|oldest|confidence|least_confident|most_unusual)$")] = "newest",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=200)] = 24,
    unusual: Annotated[bool | None, Query(description="Only images flagged unusual (true) or not (false).")] = None,
) -> ClassificationQuery:
    """Filter, sort and page parameters shared by the gallery page and the list API."""
    return ClassificationQuery(
        label or None, min_confidence, max_confidence, None, unusual, sort=sort, page=page, per_page=per_page
    )


ClassificationQueryDep = Annotated[ClassificationQuery, Depends(_classification_query)]


ModelField = Annotated[str | None, Form(alias="model", description="Model to use (see /api/models).")]
ModelQuery = Annotated[str | None, Query(alias="model", max_length=200, description="Model to use (see /api/models).")]


@dataclass(frozen=True)
class ServedModel:
    """The model a request chose (form field or query parameter, else the default) and the views this server applies."""

    predictor: OnnxPredictor
    tta: str


def _served_model(
    pool: PoolDep, settings: SettingsDep, model: ModelField = None, model_query: ModelQuery = None
) -> ServedModel:
    predictor = pool.get(model or model_query)
    return ServedModel(predictor, settings.serving_tta(predictor.bundle.tta))


def _queried_model(pool: PoolDep, settings: SettingsDep, model: ModelQuery = None) -> ServedModel:
    predictor = pool.get(model)
    return ServedModel(predictor, settings.serving_tta(predictor.bundle.tta))


ServedModelDep = Annotated[ServedModel, Depends(_served_model)]  # for form posts: a field or a query parameter
QueriedModelDep = Annotated[ServedModel, Depends(_queried_model)]  # for GETs: a query parameter
