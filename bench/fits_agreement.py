"""Do FITS files classify as their JPEGs do? Held-out gz1-sdss JPEGs written as 3-plane FITS.

Each held-out JPEG of the `morphology` model (its splits.csv; ``--split test`` by default,
``val`` for choosing a recipe) is written as a 3-plane FITS cube, rows bottom-up as FITS
stores them, in several forms, and both files are classified by the same model:

- ``uint8``: BITPIX 8, the JPEG's values;
- ``float32``: BITPIX -32 holding the same values 0-255;
- ``unit``: BITPIX -32, the values divided by 255 (0-1);
- ``flux-a0.1``, ``flux-a0.05``, ``flux-a0.2``: raw-flux cutouts made by inverting an asinh
  stretch of softening ``a`` (v = asinh(x / a) / asinh(1 / a), v the JPEG value in [0, 1]),
  in arbitrary units (x 37, on a sky pedestal of 1000) with Gaussian read noise of 0.2 % of
  full scale, as a survey cutout might hold.

Prints, per form, the share of images whose label agrees with the JPEG's, with a Wilson 95%
interval, for the model's own display and for ``--display`` alternatives.

    python bench/fits_agreement.py --model morphology --tta none
    python bench/fits_agreement.py --split val --display auto percentile:asinh minmax:asinh
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

FORMS = ("uint8", "float32", "unit", "flux-a0.1", "flux-a0.05", "flux-a0.2")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def as_form(rgb: np.ndarray, form: str, rng: np.random.Generator) -> np.ndarray:
    """The (3, H, W) cube, FITS row order, of one form."""
    cube = np.ascontiguousarray(np.moveaxis(rgb, -1, 0)[:, ::-1])
    if form == "uint8":
        return cube
    if form == "float32":
        return cube.astype(np.float32)
    if form == "unit":
        return (cube / 255.0).astype(np.float32)
    a = float(form.removeprefix("flux-a"))
    v = cube / 255.0
    flux = a * np.sinh(v * np.arcsinh(1 / a)) * 37.0 + 1000.0
    return (flux + rng.normal(0, 0.002 * 37.0, flux.shape)).astype(np.float32)


def main() -> None:
    from astropy.io import fits

    from astroclassify.imaging.stretch import FitsDisplay
    from astroclassify.inference.predictor import OnnxPredictor
    from astroclassify.modelfolder.folder import load_bundle

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="morphology")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared/data"))
    ap.add_argument("--tta", default="none")
    ap.add_argument("--split", default="test", choices=["test", "val"])
    ap.add_argument("--limit", type=int, default=0, help="first N images only (0: all)")
    ap.add_argument("--forms", nargs="+", default=list(FORMS), choices=FORMS)
    ap.add_argument("--display", nargs="*", default=[], help="alternatives to the model's own, as interval:stretch")
    args = ap.parse_args()
    bundle = load_bundle(args.model)
    rows = [r for r in csv.DictReader((bundle.path / "splits.csv").open()) if r["split"] == args.split]
    rows = rows[: args.limit] if args.limit else rows
    jpegs = [Path(args.data) / r["key"] for r in rows]
    folder = Path(tempfile.mkdtemp(prefix="fits-agreement-"))
    rng = np.random.default_rng(0)
    cubes: dict[str, list[Path]] = {form: [] for form in args.forms}
    for path in jpegs:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        for form in args.forms:
            cube = folder / f"{path.stem}-{form}.fits"
            fits.PrimaryHDU(as_form(rgb, form, rng)).writeto(cube)
            cubes[form].append(cube)
    predictor = OnnxPredictor(bundle)
    own = predictor.fits_display

    def labels(paths: list[Path]) -> list[str]:
        out = []
        for start in range(0, len(paths), 32):
            batch = np.stack([predictor.prepare(p) for p in paths[start : start + 32]])
            out += [predictor.labels[int(np.argmax(o.probabilities))] for o in predictor.outcomes(batch, tta=args.tta)]
        return out

    t0 = time.perf_counter()
    from_jpeg = labels(jpegs)
    print(f"model {bundle.name} {bundle.version}, TTA {args.tta}: {len(rows)} held-out {args.split} images")
    displays = [(f"own ({own.interval}, {own.stretch})", own)]
    for spec in args.display:
        interval, _, stretch = spec.partition(":")
        if interval.startswith("p") and "-" in interval:  # p0.5-99.7: a percentile interval
            lo, hi = (float(x) for x in interval[1:].split("-"))
            displays.append((spec, FitsDisplay(stretch or "asinh", "percentile", (lo, hi))))
        else:
            displays.append((spec, FitsDisplay(stretch or "asinh", interval)))
    for form in args.forms:
        for name, display in displays:
            predictor.fits_display = display
            from_fits = labels(cubes[form])
            same = sum(a == b for a, b in zip(from_jpeg, from_fits, strict=True))
            lo, hi = wilson(same, len(rows))
            print(
                f"  {form:10s} {name:28s} same label {same}/{len(rows)} = {same / len(rows):.4f} [{lo:.4f}, {hi:.4f}]"
            )
    print(
        f"({time.perf_counter() - t0:.0f} s) reproduce: python bench/fits_agreement.py --model {args.model} "
        f"--tta {args.tta} --split {args.split}"
    )


if __name__ == "__main__":
    main()
