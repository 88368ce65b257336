"""Annotated dependencies shared by the routers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from sqlalchemy.orm import Session

from astroclassify.config import Settings
from astroclassify.inference.pool import PredictorPool
from astroclassify.store.repository import ClassificationQuery
from astroclassify.web.guard import Caller


def _pool(request: Request) -> PredictorPool:
    return request.app.state.pool


def _session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _decode_slots(request: Request) -> threading.BoundedSemaphore:
    return request.app.state.decode_slots


def _caller(request: Request) -> Caller:
    """Set by ``RequestGuard`` on every request, after it checked the key and the rate limit."""
    return request.state.caller


PoolDep = Annotated[PredictorPool, Depends(_pool)]
SettingsDep = Annotated[Settings, Depends(_settings)]
# At most this many full-size images are decoded at once (each can take hundreds of MB).
DecodeSlotsDep = Annotated[threading.BoundedSemaphore, Depends(_decode_slots)]
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
    sort: Annotated[str, Query(pattern="^(newest|oldest|confidence|least_confident)$")] = "newest",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=200)] = 24,
) -> ClassificationQuery:
    """Filter, sort and page parameters shared by the gallery page and the list API."""
    return ClassificationQuery(label or None, min_confidence, max_confidence, None, sort, page, per_page)


ClassificationQueryDep = Annotated[ClassificationQuery, Depends(_classification_query)]
