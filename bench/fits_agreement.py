"""Do FITS files classify as their JPEGs do? The gz1-sdss test split written as 3-plane FITS.

Each held-out JPEG of the `morphology` model (its splits.csv, split == test) is written as an
8-bit (BITPIX 8) 3-plane FITS cube, rows bottom-up as FITS stores them, and both files are
classified by the same model. Prints the share of images whose label agrees, with a Wilson
95% interval, for the default display (``auto``: 8-bit data shown as they are) and, for
comparison, for an asinh stretch over the 0.5-99.7 percentiles applied to those same values.

    python bench/fits_agreement.py --model morphology --tta none
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def main() -> None:
    from astropy.io import fits

    from astroclassify.imaging.stretch import FitsDisplay
    from astroclassify.inference.bundle import load_bundle
    from astroclassify.inference.predictor import OnnxPredictor

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="morphology")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared/data"))
    ap.add_argument("--tta", default="none")
    ap.add_argument("--limit", type=int, default=0, help="first N test images only (0: all)")
    args = ap.parse_args()
    bundle = load_bundle(args.model)
    rows = [r for r in csv.DictReader((bundle.path / "splits.csv").open()) if r["split"] == "test"]
    rows = rows[: args.limit] if args.limit else rows
    jpegs = [Path(args.data) / r["key"] for r in rows]
    folder = Path(tempfile.mkdtemp(prefix="fits-agreement-"))
    cubes = []
    for path in jpegs:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        cube = folder / (path.stem + ".fits")
        fits.PrimaryHDU(np.ascontiguousarray(np.moveaxis(rgb, -1, 0)[:, ::-1])).writeto(cube)
        cubes.append(cube)
    predictor = OnnxPredictor(bundle)

    def labels(paths: list[Path]) -> list[str]:
        out = []
        for start in range(0, len(paths), 32):
            batch = np.stack([predictor.prepare(p) for p in paths[start : start + 32]])
            out += [predictor.labels[int(np.argmax(o.probabilities))] for o in predictor.outcomes(batch, tta=args.tta)]
        return out

    t0 = time.perf_counter()
    from_jpeg = labels(jpegs)
    print(f"model {bundle.name} {bundle.version}, TTA {args.tta}: {len(rows)} held-out test images")
    for name, display in (
        (
            f"the model's own ({predictor.fits_display.interval}, {predictor.fits_display.stretch})",
            predictor.fits_display,
        ),
        ("asinh over 0.5-99.7 % (stretching display values again)", FitsDisplay("asinh", "percentile")),
    ):
        predictor.fits_display = display
        from_fits = labels(cubes)
        same = sum(a == b for a, b in zip(from_jpeg, from_fits, strict=True))
        lo, hi = wilson(same, len(rows))
        print(f"  {name}: same label {same}/{len(rows)} = {same / len(rows):.4f} [95% {lo:.4f}, {hi:.4f}]")
    print(
        f"({time.perf_counter() - t0:.0f} s) reproduce: python bench/fits_agreement.py --model {args.model} --tta {args.tta}"
    )


if __name__ == "__main__":
    main()
