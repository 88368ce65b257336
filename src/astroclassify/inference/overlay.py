"""Turn a low-resolution Grad-CAM map into a heat-map overlay on the original image (no torch)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from astroclassify.imaging.transforms import letterbox_box

__all__ = ["render_overlay"]


def render_overlay(
    image: Image.Image,
    heatmap: np.ndarray,
    image_size: int,
    *,
    max_side: int = 512,
    alpha: float = 0.5,
    cmap: str = "turbo",
) -> Image.Image:
    """Blend ``heatmap`` (h, w in [0, 1], in the letterboxed model frame) over ``image``.

    The map is upsampled to the model's input size, the letterbox padding is cut away,
    and what remains is stretched over the image, so each heat pixel lands on the image
    pixel the network saw there.
    """
    import matplotlib

    image = image.convert("RGB")
    if max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side))
    heat = Image.fromarray(np.clip(heatmap, 0, 1).astype(np.float32))  # mode "F"
    heat = heat.resize((image_size, image_size), Image.Resampling.BILINEAR)
    left, top, nw, nh = letterbox_box(*image.size, image_size)
    heat = heat.crop((left, top, left + nw, top + nh)).resize(image.size, Image.Resampling.BILINEAR)
    # A uniform blend with a blue-to-red map, the usual Grad-CAM look: on a mostly black
    # sky a map that fades to transparent (or to black) would be invisible.
    colours = matplotlib.colormaps[cmap](np.asarray(heat))[..., :3]
    base = np.asarray(image, dtype=np.float32) / 255.0
    blended = (1 - alpha) * base + alpha * colours
    return Image.fromarray((blended * 255).round().astype(np.uint8))
