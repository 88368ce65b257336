"""What the models know, on their held-out test splits (issue 19's table), with 95% intervals.

Every figure comes from images the model never trained or tuned on: each model's own
``splits.csv`` (and ``tag_splits.csv`` for tags) names its test rows. Intervals are
percentile bootstraps over groups (an object's images are resampled together).

    ASTROCLASSIFY_DATA_DIR=../shared/data python bench/heads.py                    # the bundled models
    ASTROCLASSIFY_DATA_DIR=../shared/data python bench/heads.py --models runs/encoder

Prints: dso per dataset (accuracy, per-class recall, confidence of wrong answers), the
morphology classes, the tags (ring AUROC, vote-fraction errors), the `unusual` flag rate on
typical test images, look-alike precision@10 per gz1 class, and an 8x8 noise image.
"""

from __future__ import annotations

import argparse
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

ROUNDS = 1000


def interval(values: np.ndarray, groups: np.ndarray, stat, rounds: int = ROUNDS) -> tuple[float, float, float]:
    """stat over all rows, and its 95% percentile-bootstrap interval over groups."""
    from astroclassify.evaluation.metrics import group_resamples

    draws = [stat(values[rows]) for rows in group_resamples(groups, rounds)]
    return float(stat(values)), float(np.nanpercentile(draws, 2.5)), float(np.nanpercentile(draws, 97.5))


def fmt(v: tuple[float, float, float]) -> str:
    return f"{v[0]:.3f} [{v[1]:.2f}, {v[2]:.2f}]"


def test_rows(model_dir: Path, data_dir: Path, file: str = "splits.csv") -> dict[str, list]:
    """Per dataset: (path, label, group) of the test rows of a model version's split file."""
    from astroclassify.preparation.splits import read_splits

    out: dict[str, list] = defaultdict(list)
    for r in read_splits(model_dir / file):
        if r.split == "test":
            dataset, _, rel = r.key.partition("/")
            out[dataset].append((data_dir / dataset / rel, r.label, r.group))
    return out


def predict(clf, paths: list[Path]):
    preds = [p for p in clf.predict_iter([str(p) for p in paths]) if hasattr(p, "label")]
    assert len(preds) == len(paths), "an image failed to decode"
    return preds


def dso(models: Path, data_dir: Path) -> None:
    import astroclassify

    clf = astroclassify.load(models / "dso" if (models / "dso").exists() else "dso")
    print(f"\n## dso ({clf!r})")
    for dataset, rows in sorted(test_rows(clf.predictor.bundle.path, data_dir).items()):
        preds = predict(clf, [r[0] for r in rows])
        y = np.array([r[1] for r in rows])
        groups = np.array([r[2] for r in rows])
        pred = np.array([p.label for p in preds])
        conf = np.array([p.confidence for p in preds])
        correct = (pred == y).astype(float)
        line = f"{dataset}: n={len(y)} accuracy {fmt(interval(correct, groups, np.mean))}"
        for label in sorted(set(y)):
            mask = y == label
            line += f"; recall {label} {int(correct[mask].sum())}/{int(mask.sum())} = {fmt(interval(correct[mask], groups[mask], np.mean))}"
        wrong = conf[pred != y]
        line += f"; wrong answers: {len(wrong)} at mean confidence {wrong.mean():.2f}" if len(wrong) else ""
        unusual = np.array([bool(p.unusual) for p in preds], float)
        line += f"; unusual {int(unusual.sum())}/{len(y)} = {fmt(interval(unusual, groups, np.mean))}"
        print(line)
        for label in sorted(set(y)):
            mask = y == label
            print(f"    unusual among {label}: {int(unusual[mask].sum())}/{int(mask.sum())}")
    noise = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    p = clf.predict(noise)[0]
    print(f"8x8 noise: {p.label} at {p.confidence:.2f}, anomaly {p.anomaly_score}, unusual {p.unusual}")


def morphology(models: Path, data_dir: Path) -> None:
    import astroclassify

    home = models / "morphology" if (models / "morphology").exists() else None
    clf = astroclassify.load(home or "morphology")
    folder = clf.predictor.bundle.path
    print(f"\n## morphology ({clf!r})")
    rows = test_rows(folder, data_dir)["gz1-sdss"]
    from astroclassify.classifier import to_prediction

    # One pass: the predictions and the embeddings look-alike search needs.
    outcomes = list(clf.predictor.run([str(r[0]) for r in rows]))
    preds = [to_prediction(o, clf.classes_) for o in outcomes]
    y = np.array([r[1] for r in rows])
    groups = np.array([r[2] for r in rows])
    pred = np.array([p.label for p in preds])
    labels = sorted(set(y))
    correct = (pred == y).astype(float)
    both = np.stack([y, pred], 1)

    def macro_f1(rows: np.ndarray) -> float:
        from sklearn.metrics import f1_score

        return float(f1_score(rows[:, 0], rows[:, 1], labels=labels, average="macro", zero_division=0))

    print(
        f"gz1-sdss test: n={len(y)} accuracy {fmt(interval(correct, groups, np.mean))}, macro-F1 {fmt(interval(both, groups, macro_f1))}"
    )
    from sklearn.metrics import f1_score

    f1 = f1_score(y, pred, labels=labels, average=None, zero_division=0)
    print("  F1 " + ", ".join(f"{lab} {v:.3f}" for lab, v in zip(labels, f1, strict=True)))
    unusual = np.array([bool(p.unusual) for p in preds], float)
    print(f"  unusual on typical gz1 test images: {fmt(interval(unusual, groups, np.mean))}")
    lookalikes(outcomes, y)
    if clf.predictor.tag_names:
        tags(clf, folder, data_dir)


def lookalikes(outcomes, y: np.ndarray) -> None:
    """Macro precision@10 of "more like this" within the gz1 test split (same class = relevant)."""
    from astroclassify.discovery.similarity import VectorIndex

    vectors = np.stack([o.embedding for o in outcomes]).astype(np.float32)
    index = VectorIndex.build(vectors, exact=True)
    neighbours, _ = index.search(vectors, 11)
    hits = np.array([(y[[j for j in row if j != i][:10]] == y[i]).mean() for i, row in enumerate(neighbours)])
    per_class = {lab: float(hits[y == lab].mean()) for lab in sorted(set(y))}
    print(
        f"  look-alikes macro precision@10: {np.mean(list(per_class.values())):.3f} ("
        + ", ".join(f"{k} {v:.2f}" for k, v in per_class.items())
        + ")"
    )


def tags(clf, folder: Path, data_dir: Path) -> None:
    import csv

    from sklearn.metrics import roc_auc_score

    rows = test_rows(folder, data_dir, "tag_splits.csv")
    for dataset, items in rows.items():
        manifest = {r["file"]: r for r in csv.DictReader((data_dir / dataset / "manifest.csv").open())}
        preds = predict(clf, [r[0] for r in items])
        groups = np.array([r[2] for r in items])
        print(f"tags on {dataset} test (n={len(items)}):")
        for tag in clf.predictor.tag_names:
            p = np.array([pr.tags[tag] for pr in preds])
            if tag in {r[1] for r in items}:  # a label as a tag: ring vs not_ring
                t = np.array([float(r[1] == tag) for r in items])
                both = np.stack([t, p], 1)
                auc = interval(
                    both, groups, lambda b: roc_auc_score(b[:, 0], b[:, 1]) if len(set(b[:, 0])) == 2 else np.nan
                )
                ece = interval(both, groups, lambda b: ece_of(b[:, 1], b[:, 0]))
                print(f"  {tag}: AUROC {fmt(auc)}, calibration error (yes/no ECE, 10 bins) {fmt(ece)}")
                continue
            rel = {str(r[0].relative_to(data_dir / dataset)): i for i, r in enumerate(items)}
            t = np.full(len(items), np.nan)
            for file, i in rel.items():
                cell = manifest[file].get(f"{tag}_fraction", "")
                t[i] = float(cell) if cell else np.nan
            keep = ~np.isnan(t)
            err = np.abs(t - p)[keep]
            print(f"  {tag}: mean absolute error {fmt(interval(err, groups[keep], np.mean))} (n={int(keep.sum())})")


def ece_of(p: np.ndarray, t: np.ndarray) -> float:
    from astroclassify.evaluation.calibration import expected_calibration_error

    return expected_calibration_error(np.stack([1 - p, p], 1), t.astype(int), n_bins=10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="", help="A folder holding dso/ and morphology/ homes (default: bundled)")
    ap.add_argument("--only", choices=["dso", "morphology"])
    args = ap.parse_args()
    data_dir = Path(os.environ.get("ASTROCLASSIFY_DATA_DIR", Path(__file__).resolve().parents[2] / "shared/data"))
    models = Path(args.models) if args.models else Path("/nonexistent")
    print(
        f"$ ASTROCLASSIFY_DATA_DIR={data_dir} python bench/heads.py"
        + (f" --models {args.models}" if args.models else "")
    )
    if args.only in (None, "dso"):
        dso(models, data_dir)
    if args.only in (None, "morphology"):
        morphology(models, data_dir)


if __name__ == "__main__":
    main()
