"""Sky-aware image filters: background subtraction, denoising, contrast limiting.

A model's filters are part of the model, like its FITS stretch: declared in the training
config (``TrainConfig.filters``), stored in ``model.json`` and run again on every image it
classifies, after the letterbox resize (on the ``image_size`` picture the network sees, so a
filter costs the same whatever the upload's size) and only on the image, never its padding.

Which filters a new model gets by default is decided by bench/filters.py, a grouped
cross-validation comparison (docs/benchmarks.md): none is on by default. On hubble-dso and
gz1-sdss (images already processed for display) no filter's interval lay above zero, and
the three together lowered gz1-sdss macro-F1 by 0.049 [0.001, 0.097].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from astroclassify.imaging.transforms import letterbox, letterbox_box

__all__ = ["FILTERS", "apply_filters", "check_filters", "letterbox_filtered"]

FILTERS = ("background", "denoise", "clahe")


def check_filters(names: Sequence[str]) -> tuple[str, ...]:
    """Validated, in the order given; unknown names fail with the known ones listed."""
    out = tuple(n.strip() for n in names if n.strip())
    unknown = [n for n in out if n not in FILTERS]
    if unknown:
        raise ValueError(f"unknown image filter(s) {unknown}; known: {', '.join(FILTERS)}")
    return out


def letterbox_filtered(image: np.ndarray | Image.Image, size: int, filters: Sequence[str] = ()) -> np.ndarray:
    """``letterbox``, then a model's filters on the image inside the padding: what the network sees."""
    pixels = letterbox(image, size)
    if not filters:
        return pixels
    width, height = image.size if isinstance(image, Image.Image) else (image.shape[1], image.shape[0])
    return apply_filters(pixels, filters, letterbox_box(width, height, size))


def apply_filters(
    pixels: np.ndarray, filters: Sequence[str], box: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """Run ``filters`` on (S, S, 3) uint8 ``pixels`` (inside ``box`` = left, top, width, height)."""
    if not filters:
        return pixels
    left, top, width, height = box or (0, 0, pixels.shape[1], pixels.shape[0])
    region = pixels[top : top + height, left : left + width].astype(np.float32) / 255.0
    for name in filters:
        # Each filter gets [0, 1]: TV denoising leaves values a hair below 0, and CLAHE's
        # colour conversion turns those into NaN.
        region = np.clip(_FUNCTIONS[name](region), 0, 1)
    out = pixels.copy()
    out[top : top + height, left : left + width] = (np.clip(region, 0, 1) * 255 + 0.5).astype(np.uint8)
    return out


def _background(img: np.ndarray) -> np.ndarray:
    """Subtract a smooth sky: sigma-clipped medians on a coarse grid, interpolated (as photutils'
    Background2D does), so gradients from moonlight, light pollution or scattered light go
    while stars and galaxies, which a median over a box mostly ignores, stay."""
    from astropy.stats import sigma_clipped_stats
    from scipy.ndimage import median_filter, zoom

    h, w, c = img.shape
    cells = 8
    ch, cw = max(1, h // cells), max(1, w // cells)
    tiles = img[: ch * cells, : cw * cells].reshape(cells, ch, cells, cw, c).transpose(0, 2, 4, 1, 3)
    _, grid, _ = sigma_clipped_stats(tiles.reshape(cells, cells, c, -1), sigma=3.0, maxiters=5, axis=-1)
    grid = np.asarray(grid, np.float32)
    grid = median_filter(grid, size=(3, 3, 1))  # one bright galaxy filling a cell is not sky
    sky = zoom(grid, (h / cells, w / cells, 1), order=1)[:h, :w]
    return np.clip(img - sky, 0, 1)


def _denoise(img: np.ndarray) -> np.ndarray:
    """Total-variation denoising (scikit-image): flattens pixel noise, keeps edges of structures."""
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(img, weight=0.04, channel_axis=-1)


def _clahe(img: np.ndarray) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (scikit-image) of the brightness only."""
    from skimage.exposure import equalize_adapthist

    return equalize_adapthist(img, clip_limit=0.01)


_FUNCTIONS = {"background": _background, "denoise": _denoise, "clahe": _clahe}
