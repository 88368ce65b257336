"""Screen backbones and resolutions cheaply: frozen ImageNet features + logistic regression.

Uses the same grouped, seeded cross-validation folds of the non-test images as
`astroclassify train --cv`, so no test image is touched. Features are averaged over four
rotations. Prints out-of-fold accuracy on each dataset per (architecture, size).

    python bench/linear_probe.py --data hubble-dso --data nasa-planets-galaxies \\
        --arch efficientnet_lite0:224 --arch efficientnet_lite0:320 --arch efficientnet_lite2:260
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from astroclassify.imaging.transforms import to_tensor_layout
    from astroclassify.imaging.tta import tta_views
    from astroclassify.models import create_model, get_pretrained_cfg
    from astroclassify.training.config import TrainConfig
    from astroclassify.training.train import prepare as prepare_data

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", action="append", required=True)
    ap.add_argument("--arch", action="append", required=True, help="name:size")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    for spec in args.arch:
        name, size = spec.split(":")
        t0 = time.perf_counter()
        data = prepare_data(TrainConfig(data=tuple(args.data), image_size=int(size), seed=args.seed))
        pre = get_pretrained_cfg(name)
        model = create_model(name, pretrained=True, num_classes=2).eval()
        feats = []
        with torch.inference_mode():
            for start in range(0, len(data.y), 32):
                views = tta_views(data.table.pixels[start : start + 32], "rot4")
                v, n = views.shape[:2]
                x = torch.from_numpy(to_tensor_layout(views.reshape(v * n, *views.shape[2:]), pre.mean, pre.std))
                f = model.forward_features(x).mean(dim=(2, 3)).reshape(v, n, -1).mean(0)
                feats.append(f.numpy())
        X = np.concatenate(feats)
        pool = np.flatnonzero(data.split != "test")
        pred = np.full(len(data.y), -1)
        for fold in sorted(set(data.fold[pool])):
            held = pool[data.fold[pool] == fold]
            fit = pool[data.fold[pool] != fold]
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=3000))
            clf.fit(X[fit], data.y[fit])
            pred[held] = clf.predict(X[held])
        parts = []
        for ds in sorted({s.dataset for s in data.table.samples}):
            rows = np.array([i for i in pool if data.table.samples[i].dataset == ds])
            parts.append(f"{ds} {np.mean(pred[rows] == data.y[rows]):.3f}")
        print(f"{spec:<24} out-of-fold accuracy: {', '.join(parts)}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(
        "reproduce: python bench/linear_probe.py "
        + " ".join(f"--data {d}" for d in args.data)
        + " "
        + " ".join(f"--arch {a}" for a in args.arch)
    )


if __name__ == "__main__":
    main()
