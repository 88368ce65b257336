"""Sky-aware training augmentation, built on albumentations.

The sky has no "up": any rotation preserves the label. Mirror flips preserve it for
galaxy/nebula/planet, but not for spiral winding direction (a mirror turns a clockwise
spiral anticlockwise), so flips are a per-dataset switch. Borders fill with black sky.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

__all__ = ["build_augment"]


def build_augment(
    *,
    flips: bool = True,
    zoom: tuple[float, float] = (0.85, 1.25),
    noise: float = 0.03,
    seed: int | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """Return a function mapping an (H, W, 3) uint8 image to an augmented copy.

    Parameters
    ----------
    flips : bool, default=True
        Add horizontal and vertical flips; turn off where mirroring changes the label.
    zoom : (float, float), default=(0.85, 1.25)
        Scale range; >1 zooms in (crops), <1 zooms out (more black sky).
    noise : float, default=0.03
        Upper bound of Gaussian noise standard deviation, as a fraction of full scale.
    seed : int, optional
        Seed for reproducible augmentation streams.
    """
    # albumentations phones home for a version check on import unless told not to;
    # this machine (and many observatory networks) has no internet.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A
    import cv2

    steps = [
        A.Affine(
            rotate=(-180, 180),
            scale=zoom,
            translate_percent=(-0.06, 0.06),
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            p=1.0,
        ),
        A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.2, p=0.7),
        A.RandomGamma(gamma_limit=(80, 125), p=0.3),
    ]
    if noise > 0:
        steps.append(A.GaussNoise(std_range=(0.0, noise), p=0.4))
    if flips:
        steps[:0] = [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    pipeline = A.Compose(steps, seed=seed)

    def augment(image: np.ndarray) -> np.ndarray:
        return pipeline(image=image)["image"]

    return augment
