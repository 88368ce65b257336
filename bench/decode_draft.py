"""Decode + letterbox time per JPEG with a square vs a letterbox JPEG draft target.

`draft()` decodes a JPEG at 1/2, 1/4 or 1/8 scale while the result still covers the target.
A square (S, S) target keeps the shorter side >= S, so a wide image decodes at a larger
scale than its letterbox (longer side S) needs. Prints both and whether the letterboxed
arrays differ.

    python bench/decode_draft.py --data ../shared/data/hubble-dso --size 224
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from astroclassify.imaging.decode import decode_pil
from astroclassify.imaging.transforms import letterbox


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/hubble-dso"))
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    files = sorted(Path(args.data).rglob("*.jpg"))[: args.n]
    if not files:
        raise SystemExit(f"no .jpg files under {args.data}")
    blobs = [f.read_bytes() for f in files]
    best: dict[str, float] = {}
    out: dict[str, list[np.ndarray]] = {}
    for shape in ("square", "letterbox"):
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out[shape] = [letterbox(decode_pil(b, draft_size=args.size, draft_shape=shape), args.size) for b in blobs]
            best[shape] = min(best.get(shape, 1e9), time.perf_counter() - t0)
    for shape, t in best.items():
        print(f"draft={shape:9s} {1000 * t / len(blobs):6.2f} ms/image  ({len(blobs) / t:6.1f} images/s, 1 thread)")
    diff = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(out["square"], out["letterbox"], strict=True)]
    print(f"speed-up {best['square'] / best['letterbox']:.2f}x; mean |pixel difference| {np.mean(diff):.2f} / 255")
    print(f"reproduce: python bench/decode_draft.py --data {args.data} --size {args.size} --n {args.n}")


if __name__ == "__main__":
    main()
