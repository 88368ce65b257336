"""Do unlabelled galaxies help the morphology head? Self-training, chosen on validation, never test.

The teacher (the bundled `morphology` head) labels the Galaxy Zoo DECaLS images that have no
gz1 class (gz-decals-rings, its training split only: val and test never train) with its gz1
classes; those at or above ``--threshold`` confidence join gz1-sdss's training split as a
pseudo-labelled dataset (noisy-student style: the student trains them under augmentation).
Two runs of the morphology head alone, identical but for the pseudo labels, on the teacher's
own gz1 split; prints each run's validation macro-F1 per epoch and at its best epoch.
About 10 minutes per run on 2 cores.

    ASTROCLASSIFY_DATA_DIR=../shared/data python bench/pseudo_label.py --threshold 0.8
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

RECIPE = """model: efficientnet_lite0
epochs: {epochs}
batch_size: 32
lr: 0.001
backbone_lr_scale: 0.3
patience: {epochs}
seed: {seed}
threads: {threads}
heads:
  morphology:
    classes: {classes}
    taxonomy: gz1-6class
    splits: {splits}
    tags: [gz-decals-rings]
    image_size: 160
    crop: 0.4
    tta: rot4flip
    balance_power: 0.5
    per_epoch: 1800
"""


def pseudo_dataset(out: Path, data_dir: Path, threshold: float) -> tuple[Path, dict[str, int]]:
    """The teacher's confident gz1 labels for gz-decals-rings training images, as a dataset folder."""
    import astroclassify
    from astroclassify.modelfolder.folder import resolve_bundle
    from astroclassify.preparation.splits import read_splits

    teacher = astroclassify.load("morphology")
    held = {r.key: r.split for r in read_splits(resolve_bundle(teacher.predictor.bundle.path) / "tag_splits.csv")}
    rows = list(csv.DictReader((data_dir / "gz-decals-rings/manifest.csv").open()))
    train = [r for r in rows if held.get(f"gz-decals-rings/{r['file']}") == "train"]
    folder = out / "decals-pseudo"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "images").mkdir(parents=True)
    preds = teacher.predict([data_dir / "gz-decals-rings" / r["file"] for r in train])
    kept: dict[str, int] = {}
    with (folder / "manifest.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label", "release", "sha256"])
        for r, p in zip(train, preds, strict=True):
            if p.confidence < threshold:
                continue
            shutil.copy(data_dir / "gz-decals-rings" / r["file"], folder / r["file"])
            w.writerow([r["file"], p.label, r["iauname"], r["sha256"]])
            kept[p.label] = kept.get(p.label, 0) + 1
    print(f"pseudo labels: {sum(kept.values())} of {len(train)} training images at >= {threshold}: {kept}")
    return folder, kept


def splits_with(pseudo: Path, teacher_splits: Path, out: Path) -> Path:
    """The teacher's gz1 split, plus every pseudo-labelled image in train (fold 0)."""
    from astroclassify.preparation.splits import read_splits

    target = out / "splits.csv"
    lines = teacher_splits.read_text().rstrip("\n").split("\n")
    for r in csv.DictReader((pseudo / "manifest.csv").open()):
        lines.append(f"{pseudo.name}/{r['file']},{r['sha256']},{r['label']},{r['release']},train,0")
    target.write_text("\n".join(lines) + "\n")
    read_splits(target)  # fails loudly if the layout drifted
    return target


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/pseudo-label")
    args = ap.parse_args()
    import astroclassify
    from astroclassify.modelfolder.folder import resolve_bundle

    data_dir = Path(os.environ.get("ASTROCLASSIFY_DATA_DIR", Path(__file__).resolve().parents[2] / "shared/data"))
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    teacher_splits = resolve_bundle(astroclassify.load("morphology").predictor.bundle.path) / "splits.csv"
    pseudo, _ = pseudo_dataset(out, data_dir, args.threshold)
    runs = {
        "without": (["gz1-sdss"], teacher_splits),
        "with": (["gz1-sdss", str(pseudo)], splits_with(pseudo, teacher_splits, out)),
    }
    best = {}
    for name, (classes, splits) in runs.items():
        run = out / name
        run.mkdir(exist_ok=True)
        recipe = run / "recipe.yaml"
        recipe.write_text(
            RECIPE.format(
                epochs=args.epochs, seed=args.seed, threads=args.threads, classes=json.dumps(classes), splits=splits
            )
        )
        command = ["train-encoder", str(recipe), "--out", str(run), "--quiet"]
        print("$ astroclassify " + " ".join(command), flush=True)
        env = os.environ | {"ASTROCLASSIFY_DATA_DIR": str(data_dir)}
        subprocess.run([sys.executable, "-m", "astroclassify.cli", *command], check=True, env=env)
        history = json.loads((resolve_bundle(run / "morphology") / "history.json").read_text())
        curve = [round(h["val_morphology:classes"], 3) for h in history]
        best[name] = max(curve)
        print(f"{name} pseudo labels: val macro-F1 by epoch {curve}", flush=True)
    print("\n| gz1 training data | val macro-F1 (best epoch) |\n|---|---|")
    for name, score in best.items():
        print(f"| gz1-sdss train {'+ pseudo-labelled DECaLS' if name == 'with' else 'only'} | {score:.3f} |")


if __name__ == "__main__":
    main()
