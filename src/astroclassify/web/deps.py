"""Annotated dependencies shared by the routers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request
from sqlalchemy.orm import Session

from astroclassify.config import Settings
from astroclassify.inference.predictor import OnnxPredictor
from astroclassify.store.repository import ApiKeys, ClassificationQuery


def _predictor(request: Request) -> OnnxPredictor:
    return request.app.state.predictor


def _session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def _settings(request: Request) -> Settings:
    return request.app.state.settings


PredictorDep = Annotated[OnnxPredictor, Depends(_predictor)]
SettingsDep = Annotated[Settings, Depends(_settings)]
# Ids beyond SQLite's 64-bit INTEGER overflow inside the driver (a 500 found by fuzzing): 422 instead.
RecordId = Annotated[int, Path(ge=1, le=2**63 - 1, description="A stored classification's id.")]
SessionDep = Annotated[Session, Depends(_session)]


def _current_user(request: Request, session: SessionDep) -> str | None:
    """The caller's owner id (``key:<id>``) or None for anonymous use; enforces the rate limit.

    Keys come in ``X-API-Key`` or ``Authorization: Bearer``. A key that is sent must be valid
    even where keys are optional, so a typo never silently turns into anonymous access.
    """
    auth = request.headers.get("authorization", "")
    key = request.headers.get("x-api-key") or (auth[7:].strip() if auth.lower().startswith("bearer ") else "")
    owner = None
    if key:
        record = ApiKeys(session).verify(key)
        if record is None:
            raise HTTPException(401, "invalid or revoked API key", headers={"WWW-Authenticate": "ApiKey"})
        owner = f"key:{record.id}"
    elif request.app.state.require_key:
        raise HTTPException(
            401, "an API key is required: send it in the X-API-Key header", headers={"WWW-Authenticate": "ApiKey"}
        )
    limiter = request.app.state.limiter
    wait = limiter.check(owner or f"ip:{request.client.host if request.client else '?'}")
    if wait:
        raise HTTPException(
            429,
            f"rate limit of {request.app.state.settings.rate_limit_per_minute} requests per minute exceeded; retry in {wait:.1f} s",
            headers={"Retry-After": limiter.retry_after_header(wait)},
        )
    return owner


CurrentUser = Annotated[str | None, Depends(_current_user)]


def _classification_query(
    label: str | None = None,
    min_confidence: Annotated[float, Query(ge=0, le=1)] = 0.0,
    max_confidence: Annotated[float, Query(ge=0, le=1)] = 1.0,
    sort: Annotated[str, Query(pattern="^(newest|oldest|confidence|least_confident)$")] = "newest",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=200)] = 24,
) -> ClassificationQuery:
    """Filter, sort and page parameters shared by the gallery page and the list API."""
    return ClassificationQuery(label or None, min_confidence, max_confidence, None, sort, page, per_page)


ClassificationQueryDep = Annotated[ClassificationQuery, Depends(_classification_query)]
