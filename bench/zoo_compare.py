"""Train every zoo architecture on the same split with the same budget and compare them.

Each model trains for the same number of epochs at the same input size and crop, on the
split in ``--splits`` (so every test image is unseen by every model), through the normal
``train`` path: metrics come from the ONNX model on the held-out test split. Then the
script times ``predict`` (batch 1, JPEG decoding included) and prints a Markdown table for
docs/benchmarks.md.

    python bench/zoo_compare.py --data gz1-sdss --splits runs/morph1/splits.csv \
        --epochs 3 --image-size 128 --set crop=0.4 --out runs/zoo
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ZOO = (
    "small_cnn",
    "squeezenet1_1",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_lite2",
)


def images_per_second(model_dir: Path, files: list[Path]) -> float:
    from astroclassify.inference.predictor import OnnxPredictor

    pred = OnnxPredictor(model_dir)
    for f in files[:10]:  # warm-up
        pred.predict_proba(pred.prepare(f)[None], tta="none")
    t0 = time.perf_counter()
    for f in files:
        pred.predict_proba(pred.prepare(f)[None], tta="none")
    return len(files) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="gz1-sdss")
    ap.add_argument("--splits", required=True, help="splits.csv shared by every model")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--out", default="runs/zoo")
    ap.add_argument("--models", default=",".join(ZOO))
    ap.add_argument("--set", action="append", default=[], help="extra training option key=value")
    ap.add_argument("--n-speed", type=int, default=200)
    args = ap.parse_args()

    from astroclassify.models import create_model
    from astroclassify.preparation.collections import resolve_data
    from astroclassify.training.config import TrainConfig, apply_overrides
    from astroclassify.training.train import train

    rows = []
    speed_files = sorted(resolve_data(args.data).rglob("*.jpg"))[: args.n_speed]
    for name in args.models.split(","):
        out = Path(args.out) / name
        cfg = TrainConfig(
            data=(args.data,),
            out=str(out),
            name=name,
            model=name,
            epochs=args.epochs,
            image_size=args.image_size,
            splits=args.splits,
            patience=args.epochs + 1,  # the same number of epochs for everyone
        )
        cfg = apply_overrides(cfg, args.set)
        if not (out / "model.json").is_file():
            (out / "checkpoint.pt").unlink(missing_ok=True)
            train(cfg)
        meta = json.loads((out / "model.json").read_text())
        test = meta["metrics"]["test"]["all"]
        params = sum(p.numel() for p in create_model(name, num_classes=len(meta["labels"])).parameters())
        rows.append(
            {
                "model": name,
                "pretrained": meta["training"]["pretrained"],
                "accuracy": test["accuracy"],
                "macro_f1": test["macro_f1"],
                "f1": {k: v["f1"] for k, v in test["per_class"].items()},
                "ece": test["ece"],
                "params_m": params / 1e6,
                "onnx_mb": (out / "model.onnx").stat().st_size / 1e6,
                "images_per_s": images_per_second(out, speed_files),
                "train_s": meta["training"]["seconds"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    labels = list(rows[0]["f1"])
    head = ["model", "init", "accuracy", "macro-F1", *(f"F1 {x}" for x in labels), "ECE", "params (M)", "ONNX MB"]
    head += ["images/s", "train s"]
    print("\n| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        init = "ImageNet" if r["pretrained"].startswith("ImageNet") else "scratch"
        cells = [r["model"], init, f"{r['accuracy']:.3f}", f"{r['macro_f1']:.3f}"]
        cells += [f"{r['f1'][x]:.2f}" for x in labels]
        cells += [f"{r['ece']:.3f}", f"{r['params_m']:.2f}", f"{r['onnx_mb']:.1f}", f"{r['images_per_s']:.0f}"]
        cells += [str(r["train_s"])]
        print("| " + " | ".join(cells) + " |")
    print("\nreproduce: python bench/zoo_compare.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
