"""Which image filters help? A grouped cross-validation comparison that decides the defaults.

For each filter setting the images are decoded, letterboxed and filtered exactly as training
does (``TrainConfig.filters``), embedded by the frozen ImageNet EfficientNet-Lite0 and
classified by logistic regression on the grouped, seeded CV folds of the non-test images
(the folds of ``astroclassify train --cv``; no test image is touched). Reported: out-of-fold
macro-F1, and the paired per-fold difference from no filter with a t-interval over folds.
A filter becomes a default only if that interval lies above zero on every dataset.

A linear probe on frozen features measures whether a filter makes the classes easier to
separate in the representation fine-tuning starts from; fine-tuning every setting five
times is out of reach on 2 cores.

    python bench/filters.py --data hubble-dso:224:1.0 --data gz1-sdss:160:0.4
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

SETTINGS = ("", "background", "denoise", "clahe", "background,denoise,clahe")


def main() -> None:
    from scipy import stats
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from astroclassify.imaging.transforms import to_tensor_layout
    from astroclassify.models import create_model, get_pretrained_cfg
    from astroclassify.training.config import TrainConfig
    from astroclassify.training.train import prepare as prepare_data

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", action="append", required=True, help="collection:image size:crop")
    ap.add_argument("--setting", action="append", help="filters, comma-separated ('' = none); default: all")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    settings = args.setting or list(SETTINGS)
    arch = "efficientnet_lite0"
    pre = get_pretrained_cfg(arch)
    model = create_model(arch, pretrained=True, num_classes=2).eval()
    for spec in args.data:
        name, size, crop = spec.split(":")
        scores: dict[str, list[float]] = {}
        for setting in settings:
            t0 = time.perf_counter()
            cfg = TrainConfig(data=(name,), image_size=int(size), crop=float(crop), filters=setting, seed=args.seed)
            data = prepare_data(cfg)
            pool = np.flatnonzero(data.split != "test")
            feats = []
            with torch.inference_mode():
                for start in range(0, len(pool), 64):
                    x = torch.from_numpy(
                        to_tensor_layout(data.table.pixels[pool[start : start + 64]], pre.mean, pre.std)
                    )
                    feats.append(model.forward_features(x).mean(dim=(2, 3)).numpy())
            X, y, fold = np.concatenate(feats), data.y[pool], data.fold[pool]
            per_fold = []
            for k in sorted(set(fold)):
                clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=3000))
                clf.fit(X[fold != k], y[fold != k])
                per_fold.append(f1_score(y[fold == k], clf.predict(X[fold == k]), average="macro"))
            scores[setting] = per_fold
            line = (
                f"{name:<12} {setting or 'none':<26} macro-F1 {np.mean(per_fold):.3f} (folds {np.std(per_fold):.3f} sd)"
            )
            if setting and "" in scores:
                diff = np.array(per_fold) - np.array(scores[""])
                half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
                line += f"  vs none {diff.mean():+.3f} [95% {diff.mean() - half:+.3f}, {diff.mean() + half:+.3f}]"
            print(f"{line}  ({len(pool)} images, {time.perf_counter() - t0:.0f} s)", flush=True)
    print("reproduce: python bench/filters.py " + " ".join(f"--data {d}" for d in args.data))


if __name__ == "__main__":
    main()
