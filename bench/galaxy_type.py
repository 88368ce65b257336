"""Galaxy types per look: press images, telescope photos, survey cutouts, each scored on its own.

The galaxy-type targets are per look (issue 30): the mean of spiral and elliptical recall
>= 0.85 and irregular recall >= 0.5, on held-out images of each look separately. Recipes are
chosen on ``--split val``; the figures reported come from ``--split test``. Intervals are 95%
percentile bootstraps over the split's groups (an object's images resampled together).

    python bench/galaxy_type.py runs/gt-object runs/gt-none --split val
    python bench/galaxy_type.py galaxy-type --split test
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
from pathlib import Path

import numpy as np

import astroclassify
from astroclassify.evaluation.metrics import group_resamples
from astroclassify.modelfolder.folder import resolve_bundle

LOOKS = {
    "press": ["hubble-galaxy-types"],
    "photos": ["stellarium-dso"],
    "survey": ["gz1-sdss", "gz-decals-rings"],
}


def _groups(model: str, paths: list[Path]) -> np.ndarray:
    """Each scored image's group in the model's split (its own digest where the split does not name it)."""
    rows = {}
    with (resolve_bundle(model) / "splits.csv").open() as fh:
        for row in csv.DictReader(fh):
            rows[row["sha256"]] = row.get("group") or row["sha256"]
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    return np.array([rows.get(d, d) for d in digests])


def _recalls(y: np.ndarray, pred: np.ndarray, labels: list[str]) -> dict[str, float]:
    return {lab: float((pred[y == i] == i).mean()) if (y == i).any() else float("nan") for i, lab in enumerate(labels)}


def score(model: str, look: str, split: str) -> dict:
    ev = astroclassify.evaluate(model, LOOKS[look], split=split, folders=astroclassify.Installation.current().folders())
    labels = list(ev.bundle.labels if ev.bundle else ev.metrics["labels"])
    y = np.array([labels.index(t) for t in ev.y_true])
    pred = ev.probs.argmax(1)
    groups = _groups(model, ev.paths)

    def figures(rows: np.ndarray) -> dict[str, float]:
        r = _recalls(y[rows], pred[rows], labels)
        return r | {
            "spiral_elliptical": float(np.nanmean([r.get("spiral", np.nan), r.get("elliptical", np.nan)])),
            "macro_f1": _macro_f1(y[rows], pred[rows], len(labels)),
        }

    point = figures(np.arange(len(y)))
    draws = [figures(rows) for rows in group_resamples(groups, 1000)]
    ci = {k: [float(np.nanpercentile([d[k] for d in draws], q)) for q in (2.5, 97.5)] for k in point}
    support = {lab: int((y == i).sum()) for i, lab in enumerate(labels)}
    wrong = [
        {"file": str(p), "true": labels[t], "predicted": labels[q], "confidence": round(float(ev.probs[i, q]), 3)}
        for i, (p, t, q) in enumerate(zip(ev.paths, y, pred, strict=True))
        if t != q
    ]
    return {
        "model": model, "look": look, "split": split, "n": len(y), "support": support, "point": point, "ci": ci,
        "confusion": {f"{labels[t]}->{labels[q]}": int(((y == t) & (pred == q)).sum())
                      for t in range(len(labels)) for q in range(len(labels)) if t != q and ((y == t) & (pred == q)).any()},
        "wrong": wrong,
    }  # fmt: skip


def _macro_f1(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    f1 = []
    for i in range(k):
        if not (y == i).any():
            continue
        tp = float(((pred == i) & (y == i)).sum())
        p, r = tp / max(1, (pred == i).sum()), tp / (y == i).sum()
        f1.append(0.0 if p + r == 0 else 2 * p * r / (p + r))
    return float(np.mean(f1)) if f1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--split", default="val", choices=["val", "test"])
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--errors", action="store_true", help="list the misclassified images of the small looks")
    args = parser.parse_args()
    results = []
    for model in args.models:
        for look in LOOKS:
            r = score(model, look, args.split)
            results.append(r)
            p, ci = r["point"], r["ci"]

            def fmt(k: str, p=p, ci=ci) -> str:
                return f"{p[k]:.3f} [{ci[k][0]:.2f}, {ci[k][1]:.2f}]" if k in p and np.isfinite(p[k]) else "-"

            recalls = ", ".join(f"{lab} {fmt(lab)} (n={n})" for lab, n in r["support"].items() if n)
            print(
                f"{model} | {look:6} | {args.split} n={r['n']:4} | spiral+elliptical {fmt('spiral_elliptical')} | "
                f"irregular {fmt('irregular')} | macro-F1 {fmt('macro_f1')} | {recalls}"
            )
            print(f"    confusions: {r['confusion']}")
            if args.errors and look != "survey":
                for w in r["wrong"]:
                    print(f"    {w['file']}: {w['true']} -> {w['predicted']} ({w['confidence']})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nreproduce: python bench/galaxy_type.py {' '.join(args.models)} --split {args.split}")


if __name__ == "__main__":
    main()
