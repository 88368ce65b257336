"""Test-time augmentation: the label-preserving views of an image, and how to undo them.

Training (validation scores, cross-validation), inference and explanations all make the
same views in the same order, so they share this module.
"""

from __future__ import annotations

from typing import Literal, cast

import numpy as np

from astroclassify.errors import ConfigError

__all__ = ["TTA", "TTA_MODES", "merge_views", "resolve_tta", "tta_mode", "tta_views", "undo_tta_view"]

TTA = Literal["none", "rot4", "rot4flip"]
TTA_MODES: tuple[str, ...] = ("none", "rot4", "rot4flip")  # the values of TTA


def tta_mode(value: str | None) -> TTA | None:
    """``value`` checked at an edge (CLI, API, a library call): a mode, or None for the model's own."""
    if value is None:
        return None
    if value not in TTA_MODES:
        raise ConfigError(f"unknown test-time augmentation {value!r}; choose from {', '.join(TTA_MODES)}")
    return cast(TTA, value)


def resolve_tta(requested: str | None, model_default: str) -> TTA:
    """The one rule: a requested mode, else the model's own (None means the model's)."""
    mode = tta_mode(requested)
    return mode if mode is not None else (tta_mode(model_default) or "none")


def tta_views(batch: np.ndarray, mode: str) -> np.ndarray:
    """Stack label-preserving views of (N, S, S, 3) images: (V, N, S, S, 3)."""
    if mode == "none":
        return batch[None]
    if mode not in TTA_MODES:
        raise ConfigError(f"unknown test-time augmentation {mode!r}; choose from {', '.join(TTA_MODES)}")
    views = [np.rot90(batch, k, axes=(1, 2)) for k in range(4)]
    if mode == "rot4flip":
        views += [v[:, :, ::-1] for v in views]
    return np.stack(views)


def merge_views(outputs: np.ndarray, mirror: np.ndarray | None = None) -> np.ndarray:
    """Average (V, N, K) per-view logits over the views made by ``tta_views``.

    Mirrored views (index 4 and up) see a mirror image: where the classes themselves
    mirror (clockwise and anticlockwise spirals), their columns are swapped back first.
    """
    if mirror is not None and len(outputs) > 4:
        outputs = np.concatenate([outputs[:4], outputs[4:][..., mirror]])
    return outputs.mean(axis=0)


def undo_tta_view(array: np.ndarray, view: int) -> np.ndarray:
    """Map an (H, W, ...) array seen through TTA view ``view`` back to the original frame.

    Views are ordered as ``inference.predictor.tta_views`` makes them: rotations by
    0, 90, 180 and 270 degrees, then the same four mirrored left-right.
    """
    if view >= 4:
        array = array[:, ::-1]
    return np.rot90(array, -(view % 4), axes=(0, 1))
