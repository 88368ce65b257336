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
    box: tuple[int, int, int, int] | None = None,
    max_side: int = 512,
    alpha: float = 0.5,
    cmap: str = "turbo",
) -> Image.Image:
    """Blend ``heatmap`` (h, w in [0, 1], in the letterboxed model frame) over ``image``.

    The map is upsampled to the model's input size, the letterbox padding is cut away,
    and what remains is stretched over the image, so each heat pixel lands on the image
    pixel the network saw there. ``box`` (left, top, right, bottom in ``image``'s pixels) is
    the part a cropping or framing model saw: the heat fills it, a white line outlines it and
    the rest of the picture is dimmed, so the user sees what the model was shown.
    """
    import matplotlib

    from astroclassify.imaging.framing import outline_box, scale_box

    image = image.convert("RGB")
    full = image.size
    if max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side))
    w, h = image.size
    region = scale_box(box, full, (w, h)) if box is not None else None
    x0, y0, x1, y1 = region or (0, 0, w, h)
    heat = Image.fromarray(np.clip(heatmap, 0, 1).astype(np.float32))  # mode "F"
    heat = heat.resize((image_size, image_size), Image.Resampling.BILINEAR)
    left, top, nw, nh = letterbox_box(x1 - x0, y1 - y0, image_size)
    heat = heat.crop((left, top, left + nw, top + nh)).resize((x1 - x0, y1 - y0), Image.Resampling.BILINEAR)
    # A uniform blend with a blue-to-red map, the usual Grad-CAM look: on a mostly black
    # sky a map that fades to transparent (or to black) would be invisible.
    colours = matplotlib.colormaps[cmap](np.asarray(heat))[..., :3]
    base = np.asarray(image, dtype=np.float32) / 255.0
    out = base * (0.4 if region else 1.0)  # outside the box the model saw: dimmed
    out[y0:y1, x0:x1] = (1 - alpha) * base[y0:y1, x0:x1] + alpha * colours
    result = Image.fromarray((out * 255).round().astype(np.uint8))
    if region:
        outline_box(result, region)
    return result
