"""Altered copies of the public gold set: how many the loop's copy check finds, and how many other pictures it mistakes.

The gold set of ``dso`` is its shipped test split (165 images; its ``splits.csv`` is public).
Each gold image is mirrored, flipped, turned, transposed, and cropped to 90 %, 80 % and 85 %
(mirrored) of its sides at a random place; the check is the loop's (``learning/loop.py``:
thumbnails under the eight symmetries, then ORB keypoints). Other pictures: 171 ESA/Hubble
galaxy-type press images and 338 Galaxy Zoo example cutouts that are in no dso split.

    ASTROCLASSIFY_DATA_DIR=../shared/data python bench/gold_copies.py
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]


def altered_copies(rng: np.random.Generator) -> dict[str, Callable[[Image.Image], Image.Image]]:
    """What a poisoner does to a public gold image so that it passes for a new one."""

    def crop(im: Image.Image, s: float) -> Image.Image:
        w, h = im.size
        cw, ch = int(w * s), int(h * s)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        return im.crop((x, y, x + cw, y + ch))

    return {
        "mirrored": ImageOps.mirror,
        "flipped": ImageOps.flip,
        "turned 90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
        "turned 180": lambda im: im.transpose(Image.Transpose.ROTATE_180),
        "turned 270": lambda im: im.transpose(Image.Transpose.ROTATE_270),
        "transposed": lambda im: im.transpose(Image.Transpose.TRANSPOSE),
        "cropped 90%": lambda im: crop(im, 0.9),
        "cropped 80%": lambda im: crop(im, 0.8),
        "cropped 85%, mirrored": lambda im: ImageOps.mirror(crop(im, 0.85)),
    }


def main() -> None:
    from astroclassify.modelfolder.folder import bundled_folder
    from astroclassify.preparation.copies import CropIndex, keypoints
    from astroclassify.preparation.splits import copies_of, fingerprint, read_splits

    data = Path(os.environ.get("ASTROCLASSIFY_DATA_DIR", ROOT.parent / "shared" / "data"))
    champion = bundled_folder("dso")
    assert champion is not None
    gold = [Image.open(data / r.key).convert("RGB") for r in read_splits(champion / "splits.csv") if r.split == "test"]
    prints = [fingerprint(g) for g in gold]
    index = CropIndex.of([keypoints(g) for g in gold])
    alterations = altered_copies(np.random.default_rng(0))

    def found(images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        by_thumb = np.zeros(len(images), bool)
        by_thumb[copies_of([fingerprint(im) for im in images], prints)] = True
        both = by_thumb.copy()
        for i, im in enumerate(images):
            if not both[i]:
                both[i] = index.match(im) is not None
        return by_thumb, both

    print(f"{len(gold)} gold images of dso; each altered copy checked as the loop checks new labels")
    print(f"{'copy':24s} {'thumbnails':>10s} {'+ keypoints':>12s}")
    started, n = time.perf_counter(), 0
    for name, alter in alterations.items():
        thumbs, both = found([alter(g) for g in gold])
        n += len(gold)
        print(f"{name:24s} {int(thumbs.sum()):6d}/{len(gold)} {int(both.sum()):8d}/{len(gold)}")
    others = [
        data / source / row["file"]
        for source in ("hubble-galaxy-types", "gz-tree-examples")
        for row in csv.DictReader((data / source / "manifest.csv").open())
    ]
    thumbs, both = found([Image.open(p).convert("RGB") for p in others])
    n += len(others)
    print(f"{'other pictures (false)':24s} {int(thumbs.sum()):6d}/{len(others)} {int(both.sum()):8d}/{len(others)}")
    for p in np.array(others)[both]:
        print(f"  taken for a copy: {Path(p).relative_to(data)}")
    print(f"{(time.perf_counter() - started) / n * 1000:.0f} ms per picture checked (2 cores)")
    print(f"command: ASTROCLASSIFY_DATA_DIR={data} python bench/gold_copies.py")


if __name__ == "__main__":
    main()
