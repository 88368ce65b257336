"""Annotated dependencies shared by the routers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from astroclassify.inference.predictor import OnnxPredictor


def _predictor(request: Request) -> OnnxPredictor:
    return request.app.state.predictor


def _session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


PredictorDep = Annotated[OnnxPredictor, Depends(_predictor)]
SessionDep = Annotated[Session, Depends(_session)]
