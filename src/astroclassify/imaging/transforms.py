"""Resize and normalise for the networks; augmentations live in ``augment.py``."""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["letterbox", "to_tensor_layout"]


def letterbox(rgb: np.ndarray, size: int) -> np.ndarray:
    """Fit the whole image into ``size`` x ``size``, padding with black.

    Astronomical objects are often off-centre or fill the frame, so cropping can cut the
    object away; black padding is what the sky around it looks like anyway.
    """
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if (nh, nw) != (h, w):
        resample = Image.Resampling.BILINEAR if scale > 0.5 else Image.Resampling.BOX
        if scale < 0.5:  # box-filter down to ~2x, then bilinear: fast and alias-free
            rgb = np.asarray(Image.fromarray(rgb).reduce(max(1, int(1 / scale / 2))), dtype=np.uint8)
            resample = Image.Resampling.BILINEAR
        rgb = np.asarray(Image.fromarray(rgb).resize((nw, nh), resample), dtype=np.uint8)
    out = np.zeros((size, size, 3), dtype=np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = rgb
    return out


def to_tensor_layout(batch_hwc: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(N, H, W, 3) uint8 → (N, 3, H, W) float32, normalised with the model's mean/std."""
    x = batch_hwc.astype(np.float32) * (1.0 / 255.0)
    x -= np.asarray(mean, dtype=np.float32)
    x /= np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
