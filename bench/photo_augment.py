"""Does imitating amateur photographs in augmentation help? Chosen on validation, never test.

Trains the `dso` head alone (hubble-dso, nasa-planets-galaxies, stellarium-dso; the
shared-encoder recipe's dso head) with ``photo: true`` and ``photo: false`` for each seed,
and prints each run's validation macro-F1 (best epoch) and its validation scores on each
dataset, stellarium-dso's photographs from ordinary telescopes above all. About 5 minutes
per run on 2 cores.

    ASTROCLASSIFY_DATA_DIR=../shared/data python bench/photo_augment.py --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

RECIPE = """model: efficientnet_lite0
epochs: {epochs}
batch_size: 32
lr: 0.001
backbone_lr_scale: 0.3
patience: {epochs}
seed: {seed}
threads: {threads}
heads:
  dso:
    classes: [hubble-dso, nasa-planets-galaxies, stellarium-dso]
    image_size: 224
    tta: rot4
    photo: {photo}
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/photo-augment")
    args = ap.parse_args()
    import astroclassify

    data_dir = os.environ.get("ASTROCLASSIFY_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared/data"))
    results: dict[str, list[dict]] = {"true": [], "false": []}
    for seed in args.seeds:
        for photo in ("true", "false"):
            out = Path(args.out) / f"photo-{photo}-seed{seed}"
            out.mkdir(parents=True, exist_ok=True)
            recipe = out / "recipe.yaml"
            recipe.write_text(RECIPE.format(epochs=args.epochs, seed=seed, threads=args.threads, photo=photo))
            command = ["train-encoder", str(recipe), "--out", str(out), "--quiet"]
            print("$ astroclassify " + " ".join(command), flush=True)
            env = os.environ | {"ASTROCLASSIFY_DATA_DIR": data_dir}
            subprocess.run([sys.executable, "-m", "astroclassify.cli", *command], check=True, env=env)
            row = {"seed": seed, "val": {}}
            for dataset in ("hubble-dso", "nasa-planets-galaxies", "stellarium-dso"):
                ev = astroclassify.evaluate(
                    out / "dso", dataset, split="val", folders=astroclassify.Folders(data_dir=Path(data_dir))
                )
                m = ev.metrics
                row["val"][dataset] = {
                    "n": m["n"],
                    "accuracy": m["accuracy"],
                    "macro_f1": m["macro_f1"],
                    "recall": {k: c["recall"] for k, c in m["per_class"].items() if c["support"]},
                }
            history = json.loads((astroclassify.load(out / "dso").predictor.bundle.path / "history.json").read_text())
            row["val_macro_f1_best_epoch"] = max(h["val_dso:classes"] for h in history)
            results[photo].append(row)
            print(f"photo={photo} seed={seed}: " + json.dumps(row), flush=True)
    print(
        "\n| photo augmentation | val macro-F1 (best epoch) | "
        + " | ".join(f"{d} val accuracy" for d in ("hubble-dso", "nasa-planets-galaxies", "stellarium-dso"))
        + " | stellarium star_cluster recall |"
    )
    print("|---|---|---|---|---|---|")
    for photo, rows in results.items():
        cells = [np.mean([r["val_macro_f1_best_epoch"] for r in rows])]
        cells += [
            np.mean([r["val"][d]["accuracy"] for r in rows])
            for d in ("hubble-dso", "nasa-planets-galaxies", "stellarium-dso")
        ]
        cells.append(np.mean([r["val"]["stellarium-dso"]["recall"].get("star_cluster", np.nan) for r in rows]))
        print(f"| {photo} (mean of seeds {args.seeds}) | " + " | ".join(f"{c:.3f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
