"""Sky-aware training augmentation, built on albumentations.

The sky has no "up": any rotation preserves the label. Mirror flips preserve it for
galaxy/nebula/planet, but not for spiral winding direction (a mirror turns a clockwise
spiral anticlockwise), so flips are a per-dataset switch. Borders fill with black sky.

``photo=True`` adds what separates a user's own telescope photograph from a press image
(issue 19): greyscale and false-colour casts, a different stretch, a sky-background
gradient (light pollution, vignetting), sensor noise, tracking and seeing blur, JPEG
re-encoding, field stars across the frame, and off-centre framing.
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
    photo: bool = False,
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
    photo : bool, default=False
        Also imitate amateur photographs (see the module docstring).
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
    if photo:
        steps[-3 if noise > 0 else -2] = A.Affine(  # wider framing: off-centre, cropped in or small in the field
            rotate=(-180, 180),
            scale=(0.7, 1.5),
            translate_percent=(-0.15, 0.15),
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            p=1.0,
        )
        steps += [
            A.RandomGamma(gamma_limit=(50, 170), p=0.5),  # a harder or softer stretch
            A.OneOf([A.RGBShift(40, 40, 40), A.HueSaturationValue(20, 40, 0)], p=0.4),  # colour casts
            A.ToGray(p=0.2),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 7))], p=0.3),
            A.ImageCompression(quality_range=(30, 90), p=0.4),
        ]
    pipeline = A.Compose(steps, seed=seed)
    rng = np.random.default_rng(seed)

    def augment(image: np.ndarray) -> np.ndarray:
        out = pipeline(image=image)["image"]
        return _sky_and_stars(out, rng) if photo else out

    return augment


def _sky_and_stars(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A linear sky-background gradient and a sprinkle of field stars.

    albumentations has neither (its fog and sun flare are daylight effects); both are a few
    lines of NumPy.
    """
    img = image.astype(np.float32)
    h, w = img.shape[:2]
    if rng.random() < 0.4:
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        ramp = np.cos(angle) * xx + np.sin(angle) * yy
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
        tint = rng.uniform(0.6, 1.0, 3)  # sodium-orange or grey glow
        img += (rng.uniform(5, 45) * ramp)[..., None] * tint
    if rng.random() < 0.4:
        n = int(rng.integers(5, 60))
        ys, xs = rng.integers(0, h, n), rng.integers(0, w, n)
        bright = rng.uniform(60, 255, n)
        for y, x, b in zip(ys, xs, bright, strict=True):
            y0, y1, x0, x1 = max(y - 1, 0), min(y + 2, h), max(x - 1, 0), min(x + 2, w)
            img[y0:y1, x0:x1] = np.maximum(img[y0:y1, x0:x1], b * 0.5)
            img[y, x] = np.maximum(img[y, x], b)
    return np.clip(img, 0, 255).astype(np.uint8)
