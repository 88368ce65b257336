"""The loop on a small real set: does it promote a challenger with more correct labels, and refuse
one trained on 30% flipped labels? How long does a turn take on 2 cores?

A champion is trained on part of hubble-dso (galaxy / nebula); the rest comes back as
labels from elsewhere (``learn --import``), once as published and once with 30% of the labels
flipped. Each scenario starts from a copy of the same champion and runs one turn of
``learn``: with the label cleaning on, and (flipped labels) with it off, so the gold set alone
stands between the noise and the users. Prints each decision with its paired interval.

    ASTROCLASSIFY_DATA_DIR=../shared/data python bench/learn_loop.py [--kinds head]

``--kinds``: the challenger of each turn, the whole network fine-tuned (``full``) or the
champion's encoder kept and its last layer refitted (``head``, training/refit.py); the
``turn`` column is the verdict's wall time on this machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import time
from pathlib import Path


def folder(root: Path, src: Path, rows: list[dict], flip: float, seed: int) -> Path:
    """A dataset folder of ``rows`` of hubble-dso, a ``flip`` share of labels swapped."""
    shutil.rmtree(root, ignore_errors=True)
    (root / "images").mkdir(parents=True)
    rng = random.Random(seed)
    with (root / "manifest.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label", "release"])
        for r in rows:
            name = Path(r["file"]).name
            shutil.copy(src / r["file"], root / "images" / name)
            label = r["label"]
            if rng.random() < flip:
                label = "nebula" if label == "galaxy" else "galaxy"
            w.writerow([f"images/{name}", label, r["esa_id"]])
    return root


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", type=int, default=150, help="hubble-dso images the champion trains on (20%% become gold)")
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--out", default="runs/learn-loop")
    ap.add_argument(
        "--kinds",
        nargs="+",
        default=["full", "head"],
        choices=["full", "head"],
        help="challengers to run each turn with",
    )
    args = ap.parse_args()
    from astroclassify.learning.loop import learn
    from astroclassify.training.config import TrainConfig
    from astroclassify.training.train import train

    data_dir = Path(os.environ.get("ASTROCLASSIFY_DATA_DIR", Path(__file__).resolve().parents[2] / "shared/data"))
    src = data_dir / "hubble-dso"
    rows = list(csv.DictReader((src / "manifest.csv").open()))
    random.Random(0).shuffle(rows)
    out = Path(args.out).resolve()
    base = folder(out / "data/base", src, rows[: args.base], 0.0, 1)
    correct = folder(out / "data/correct", src, rows[args.base :], 0.0, 1)
    flipped = folder(out / "data/flipped", src, rows[args.base :], 0.3, 1)
    started = time.perf_counter()
    cfg = TrainConfig(
        data=(str(base),),
        out=str(out / "champion"),
        model=args.model,
        image_size=args.image_size,
        epochs=args.epochs,
        patience=args.epochs,
        threads=2,
        tta="none",
    )
    shutil.rmtree(out / "champion", ignore_errors=True)
    champion = train(cfg)
    print(f"champion: {champion!r}, {time.perf_counter() - started:.0f} s")
    print(
        f"\n| new labels ({len(rows) - args.base} images) | challenger | cleaning | suspects | decision | gold n | macro-F1 champion -> challenger | difference [95% paired] | turn |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, data, clean, kind in (
        (name, data, clean, kind)
        for kind in args.kinds
        for name, data, clean in (
            ("correct", correct, True),
            ("30% flipped", flipped, True),
            ("30% flipped", flipped, False),
        )
    ):
        home = out / f"turn-{kind}-{name.replace('% ', '-')}-{'clean' if clean else 'raw'}"
        shutil.rmtree(home, ignore_errors=True)
        shutil.copytree(out / "champion", home)
        t0 = time.perf_counter()
        r = learn(home, imported=[data], clean=clean, kind=kind)
        c = r.comparison
        figures = (
            f"{c.champion_macro_f1:.3f} -> {c.challenger_macro_f1:.3f} | {c.difference:+.3f} [{c.difference_ci[0]:+.3f}, {c.difference_ci[1]:+.3f}]"
            if c
            else "- | -"
        )
        print(
            f"| {name} | {kind} | {'on' if clean else 'off'} | {len(r.suspects)} | **{r.decision}** | {r.gold} | {figures} | {time.perf_counter() - t0:.0f} s |",
            flush=True,
        )


if __name__ == "__main__":
    main()
