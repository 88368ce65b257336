"""How FITS intensities become display pixels: an interval, then a stretch (astropy.visualization).

A model learns from pixels, so the stretch is part of the model: it is chosen when the model
is trained (``TrainConfig.fits_stretch``/``fits_interval``), stored in ``model.json`` and used
again whenever the model reads a FITS file, so training and inference see the same pixels.

``interval="auto"`` (the default) shows data that already hold display values as they are:
8-bit data (BITPIX 8), integers within 0-255 of any type, and floats within 0-1 or 0-255
(a JPEG written as FITS, survey colour cutouts); stretching them again would show the model
another picture. Raw data (fluxes, counts) are stretched with the lower percentile as black
and the upper one at ``upper_level`` of full scale (half, by default), as survey colour
images show the sky black and their brightest 0.3 % at about mid-grey: the gz1-sdss JPEGs
put their 99.7th percentile at 0.50 (median over training images). On asinh-inverted
cutouts of held-out JPEGs this gave the JPEG's label 0.94 of the time against 0.80 for
stretching the 0.5-99.7 % interval to full scale (bench/fits_agreement.py, validation split).
``interval="percentile"`` keeps that full-scale interval.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["STRETCHES", "INTERVALS", "FitsDisplay", "display_scale", "stretch_to_uint8"]

STRETCHES = ("asinh", "log", "sqrt", "linear")
INTERVALS = ("auto", "percentile", "zscale")


@dataclass(frozen=True)
class FitsDisplay:
    """Interval and stretch for FITS data; the default is astronomy's usual asinh view."""

    stretch: str = "asinh"  # asinh | log | sqrt | linear
    interval: str = "auto"  # auto (BITPIX 8 data as is, else percentile) | percentile | zscale
    percentiles: tuple[float, float] = (0.5, 99.7)  # lower, upper (percentile interval)
    upper_level: float = 0.5  # auto, raw data: the display level (0-1) of the upper percentile

    def __post_init__(self) -> None:
        if self.stretch not in STRETCHES:
            raise ValueError(f"FITS stretch {self.stretch!r} is not one of {', '.join(STRETCHES)}")
        if self.interval not in INTERVALS:
            raise ValueError(f"FITS interval {self.interval!r} is not one of {', '.join(INTERVALS)}")
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError(f"FITS percentiles {self.percentiles} must satisfy 0 <= lower < upper <= 100")
        if not 0 < self.upper_level <= 1:
            raise ValueError(f"FITS upper_level {self.upper_level} must be in (0, 1]")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"percentiles": list(self.percentiles)}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> FitsDisplay:
        """From ``model.json``. Models made before stretches were stored get the default: the
        asinh view they always had, except that BITPIX 8 data (display values) are no longer
        stretched twice."""
        if not data:
            return cls()
        return cls(
            stretch=str(data.get("stretch", "asinh")),
            interval=str(data.get("interval", "auto")),
            percentiles=tuple(float(p) for p in data.get("percentiles", (0.5, 99.7))),  # type: ignore[arg-type]
            upper_level=float(data.get("upper_level", 0.5)),
        )


def _stretch(name: str):
    from astropy.visualization import AsinhStretch, LinearStretch, LogStretch, SqrtStretch

    # a=0.1: asinh(10 x) / asinh(10), linear below about a tenth of the range, logarithmic above.
    return {"asinh": AsinhStretch(a=0.1), "log": LogStretch(), "sqrt": SqrtStretch(), "linear": LinearStretch()}[name]


def display_scale(values: np.ndarray) -> float | None:
    """The full-scale value (255 or 1) of data that already hold display values; None for raw data.

    Integers within 0-255, floats within 0-255 reaching past 64, and floats within 0-1
    reaching past 0.25 are display values; anything else (negative sky noise, fluxes in any
    other range, a faint image that uses a sliver of the range) is raw and gets stretched.
    """
    lo, hi = float(values.min()), float(values.max())
    if lo < 0 or hi > 255:
        return None
    if hi <= 1:
        return 1.0 if hi >= 0.25 else None
    if hi >= 64 or np.array_equal(values, np.round(values)):
        return 255.0
    return None


def stretch_to_uint8(arr: np.ndarray, display: FitsDisplay, *, eight_bit: bool = False) -> np.ndarray:
    """Map intensities (H, W) or (H, W, 3), NaN for blank pixels, to uint8 RGB.

    The interval is computed over all planes together, so a colour cube keeps its colours.
    Blank pixels show as the interval's lower end (the sky), never as bright noise.
    """
    from astropy.visualization import AsymmetricPercentileInterval, ZScaleInterval

    finite = np.isfinite(arr)
    if not finite.any():
        raise ValueError("image has no finite pixel values")
    values = arr[finite]
    full_scale = 255.0 if eight_bit else display_scale(values)
    if display.interval == "auto" and full_scale:
        scaled = np.clip(np.where(finite, arr, 0.0) / full_scale, 0, 1)
        out = (scaled * 255 + 0.5).astype(np.uint8)
    else:
        if display.interval == "zscale":
            vmin, vmax = ZScaleInterval().get_limits(values)
        else:
            vmin, vmax = AsymmetricPercentileInterval(*display.percentiles).get_limits(values)
            if display.interval == "auto":  # raw data: the upper percentile at upper_level, not full scale
                level = _stretch(display.stretch).inverse(np.array([display.upper_level], dtype=float))[0]
                vmax = vmin + (vmax - vmin) / max(float(level), 1e-9)
        scaled = np.clip((np.where(finite, arr, vmin) - vmin) / max(float(vmax - vmin), 1e-12), 0, 1)
        out = (np.clip(_stretch(display.stretch)(scaled), 0, 1) * 255 + 0.5).astype(np.uint8)
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=-1)
    return out
