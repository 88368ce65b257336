"""Annotated dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from astroclassify.inference.predictor import OnnxPredictor


def _predictor(request: Request) -> OnnxPredictor:
    return request.app.state.predictor


PredictorDep = Annotated[OnnxPredictor, Depends(_predictor)]
