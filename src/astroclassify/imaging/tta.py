"""Test-time augmentation: the label-preserving views of an image, and how to undo them.

Training (validation scores, cross-validation), inference and explanations all make the
same views in the same order, so they share this module.
"""

from __future__ import annotations

import numpy as np

from astroclassify.errors import ConfigError

__all__ = ["TTA_MODES", "merge_views", "tta_views", "undo_tta_view"]

TTA_MODES = ("none", "rot4", "rot4flip")


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
