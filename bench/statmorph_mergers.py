"""Non-parametric morphology beside the network: does statmorph find gz1 mergers better?

For each gz1-sdss image of a held-out split of the morphology model, statmorph (Rodriguez-Gomez
et al. 2019) measures the central galaxy's concentration, asymmetry, smoothness, Gini, M20 and
the Gini-M20 merger statistic, on a segmentation from photutils (background from sigma-clipped
statistics, 1.5 sigma, the segment under the centre). Mergers are then ranked four ways:

- the network's calibrated merger probability (the bundled model, its own test-time views);
- the classic criteria as they are: asymmetry A (Conselice 2003, merger when A > 0.35) and the
  Gini-M20 merger statistic S(G, M20) (Lotz et al. 2004; Snyder et al. 2015);
- a logistic regression on the statmorph measurements, and one on those plus the network's
  merger probability, each scored out-of-fold (5 folds stratified within the split), so no
  image is scored by a fit that saw it.

Chosen on ``--split val``; the test split is for the figure after the choice.

    ASTROCLASSIFY_DATA_DIR=../shared/data python bench/statmorph_mergers.py --split val --others 300

Needs ``pip install statmorph`` (0.7; it brings photutils and scikit-image), which is not a
dependency of astroclassify: this bench found no use for it (docs/benchmarks.md).

statmorph takes about two seconds an image on one core (its Petrosian radii and asymmetry
minimisation), so ``--others`` scores every merger and a seeded sample of the other images.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

FEATURES = ("concentration", "asymmetry", "smoothness", "gini", "m20", "gini_m20_merger", "shape_asymmetry")


def measure(path: Path) -> dict[str, float] | None:
    """statmorph's measurements of the galaxy at the centre of a cutout (grey), or None if it fails."""
    import statmorph
    from astropy.stats import sigma_clipped_stats
    from photutils.segmentation import detect_sources
    from PIL import Image

    grey = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    _, median, std = sigma_clipped_stats(grey, sigma=3.0)
    image = grey - median
    segm = detect_sources(image, 1.5 * max(std, 1.0), n_pixels=10)
    if segm is None:
        return None
    cy, cx = (s // 2 for s in image.shape)
    label = int(segm.data[cy, cx])
    if label == 0:  # nothing under the centre: the segment nearest to it
        ys, xs = np.nonzero(segm.data)
        k = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
        label = int(segm.data[ys[k], xs[k]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        morph = statmorph.SourceMorphology(image, segm, label, gain=1.0)
    if morph.flag >= 2:  # statmorph's own "bad measurement" flag
        return None
    return {f: float(getattr(morph, f)) for f in FEATURES}


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score, roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import astroclassify
    from astroclassify.evaluation.metrics import group_resamples
    from astroclassify.preparation.collections import shared_data_dir
    from astroclassify.preparation.splits import read_splits

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="morphology")
    ap.add_argument("--split", default="val", choices=["val", "test"])
    ap.add_argument("--others", type=int, default=0, help="score every merger and this many others (0: all)")
    args = ap.parse_args()
    data = shared_data_dir(None)
    assert data is not None, "set ASTROCLASSIFY_DATA_DIR"
    clf = astroclassify.load(args.model)
    rows = [
        r
        for r in read_splits(clf.predictor.bundle.path / "splits.csv")
        if r.split == args.split and r.key.startswith("gz1-sdss/")
    ]
    if args.others:  # every merger, and a seeded sample of the rest: AUROC is unbiased under it
        rng = np.random.default_rng(0)
        others = [r for r in rows if r.label != "merger"]
        keep = {id(r) for r in rng.choice(np.array(others, dtype=object), min(args.others, len(others)), replace=False)}
        rows = [r for r in rows if r.label == "merger" or id(r) in keep]
    paths = [Path(data) / r.key for r in rows]
    merger = clf.classes_.index("merger")
    p_net = clf.predict_proba([str(p) for p in paths])[:, merger]
    print(f"network: {len(paths)} images scored", flush=True)
    started = time.perf_counter()
    measured = []
    for i, p in enumerate(paths):
        measured.append(measure(p))
        if (i + 1) % 100 == 0:
            print(f"  statmorph: {i + 1}/{len(paths)}", flush=True)
    seconds = (time.perf_counter() - started) / len(paths)
    ok = np.array([m is not None for m in measured])
    y = np.array([r.label == "merger" for r in rows])
    print(
        f"{args.split}: {len(rows)} gz1 images, {int(y.sum())} mergers; statmorph measured {int(ok.sum())} "
        f"({int(y[ok].sum())} mergers), {1000 * seconds:.0f} ms per image"
    )
    X = np.array([[m[f] for f in FEATURES] for m in measured if m is not None])
    X = np.nan_to_num(X, nan=0.0, posinf=0.0, neginf=0.0)
    yk, pk = y[ok], p_net[ok]
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    lr = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000))
    scores = {
        "network merger probability": pk,
        "asymmetry A (Conselice)": X[:, FEATURES.index("asymmetry")],
        "Gini-M20 merger statistic (Lotz)": X[:, FEATURES.index("gini_m20_merger")],
        "logistic regression on statmorph (out-of-fold)": cross_val_predict(
            lr, X, yk, cv=folds, method="predict_proba"
        )[:, 1],
        "logistic regression on statmorph + network (out-of-fold)": cross_val_predict(
            lr, np.hstack([X, np.log(np.clip(pk, 1e-4, 1))[:, None]]), yk, cv=folds, method="predict_proba"
        )[:, 1],
    }
    print("\n| ranking mergers by | AUROC [95%] | average precision | precision@20 |")
    print("|---|---|---|---|")
    for name, s in scores.items():
        auc = roc_auc_score(yk, s)
        draws = [
            roc_auc_score(yk[i], s[i]) for i in group_resamples(np.arange(len(yk)), 1000) if 0 < yk[i].sum() < len(i)
        ]
        lo, hi = np.percentile(draws, [2.5, 97.5])
        top = np.argsort(-s)[:20]
        print(
            f"| {name} | {auc:.3f} [{lo:.2f}, {hi:.2f}] | {average_precision_score(yk, s):.3f} | {yk[top].mean():.2f} |"
        )
    a = X[:, FEATURES.index("asymmetry")]
    flagged = a > 0.35
    print(
        f"\nA > 0.35 flags {int(flagged.sum())} images: {int((flagged & yk).sum())} mergers "
        f"(recall {(flagged & yk).sum() / max(1, yk.sum()):.2f}); S(G, M20) > 0 flags "
        f"{int((X[:, FEATURES.index('gini_m20_merger')] > 0).sum())}"
    )
    sample = f" --others {args.others}" if args.others else ""
    print(
        f"\nreproduce: ASTROCLASSIFY_DATA_DIR=../shared/data python bench/statmorph_mergers.py --split {args.split}{sample}"
    )


if __name__ == "__main__":
    main()
