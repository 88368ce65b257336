"""Classification metrics as one JSON-ready dict (the ``evaluate --json`` contract), with intervals."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from astroclassify.evaluation.calibration import expected_calibration_error

__all__ = ["bootstrap_intervals", "classification_metrics", "group_resamples", "with_interval"]

N_RESAMPLES = 2000
LEVEL = 0.95


def classification_metrics(
    y_true: list[str],
    probs: np.ndarray,
    labels: list[str],
    *,
    n_bins: int = 15,
    groups: Sequence[str] | None = None,
    seed: int = 0,
    intervals: bool = True,
) -> dict:
    """Accuracy, macro-F1, per-class P/R/F1/support, confusion matrix and ECE, with 95% intervals.

    ``macro_f1`` averages over the labels present in ``y_true`` (a 3-class model evaluated
    on a galaxy/nebula set is scored over galaxy and nebula; predictions of the absent
    class still count as errors). Every label of the model appears in ``per_class``.

    ``ci`` holds percentile-bootstrap intervals for accuracy, macro-F1 and ECE, and
    ``per_class[label]["f1_ci"]`` for each class present; see ``bootstrap_intervals``.
    ``intervals=False`` leaves them out (per-epoch validation scores in the training loop).
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    index = {label: i for i, label in enumerate(labels)}
    y = np.array([index[t] for t in y_true], dtype=int)
    pred = probs.argmax(axis=1) if len(y) else np.zeros(0, dtype=int)
    all_idx = list(range(len(labels)))
    present = sorted(set(y.tolist()))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=all_idx, zero_division=0)
    ci = bootstrap_intervals(
        y, probs, len(labels), groups=groups, n_bins=n_bins, seed=seed, n_resamples=N_RESAMPLES if intervals else 0
    )
    # A class absent from the scored images has no recall or F1 (and no precision to speak of):
    # null, so that averaging per_class never counts it as 0 in a macro-F1.
    per_class = {
        labels[i]: {
            "precision": round(float(p[i]), 4) if s[i] else None,
            "recall": round(float(r[i]), 4) if s[i] else None,
            "f1": round(float(f[i]), 4) if s[i] else None,
            "support": int(s[i]),
            **({"f1_ci": ci["per_class_f1"][i]} if i in ci["per_class_f1"] else {}),
        }
        for i in all_idx
    }
    macro = float(np.mean([f[i] for i in present])) if present else float("nan")
    return {
        "n": int(len(y)),
        "accuracy": round(float((pred == y).mean()), 4) if len(y) else float("nan"),
        "macro_f1": round(macro, 4),
        "ece": round(expected_calibration_error(probs, y, n_bins), 4),
        **(
            {"ci": {k: ci[k] for k in ("accuracy", "macro_f1", "ece", "level", "method", "n_resamples", "clusters")}}
            if intervals
            else {}
        ),
        "per_class": per_class,
        "confusion_matrix": {
            "labels": list(labels),
            "matrix": confusion_matrix(y, pred, labels=all_idx).tolist(),
        },
    }


def with_interval(value: float, interval: Sequence[float] | None, digits: int = 3) -> str:
    """``0.893 [0.82, 0.96]``: a figure and its 95% interval (two decimals: no more are known)."""
    text = f"{value:.{digits}f}"
    return f"{text} [{interval[0]:.2f}, {interval[1]:.2f}]" if interval else text


def group_resamples(groups: Sequence[str] | np.ndarray, n_resamples: int = 1000, seed: int = 0) -> Iterator[np.ndarray]:
    """Row indices of bootstrap resamples that draw whole groups (an object's images together).

    For statistics that are not classification counts (tag errors, AUROC of one tag);
    ``bootstrap_intervals`` does classification metrics faster, from per-group sums.
    """
    groups = np.asarray(groups)
    rng = np.random.default_rng(seed)
    unique = np.unique(groups)
    members = [np.flatnonzero(groups == g) for g in unique]
    for _ in range(n_resamples):
        yield np.concatenate([members[i] for i in rng.integers(0, len(unique), len(unique))])


def bootstrap_intervals(
    y: np.ndarray,
    probs: np.ndarray,
    n_classes: int,
    *,
    groups: Sequence[str] | None = None,
    n_bins: int = 15,
    n_resamples: int = N_RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> dict:
    """Percentile-bootstrap intervals of accuracy, macro-F1, per-class F1 and ECE.

    Resampling draws whole ``groups`` (an object's several images, near-duplicates) when
    given, since such images are not independent evidence; otherwise single images. A test
    split of 75 images cannot support three decimals: the interval says how far an
    independent sample of the same kind may land.

    Every statistic is a function of per-cluster sums (confusion counts, per-bin
    calibration gaps), so each resample is one matrix product of cluster weights.

    Returns
    -------
    dict
        ``accuracy``, ``macro_f1``, ``ece``: ``[low, high]`` (None for fewer than 2 images);
        ``per_class_f1``: {class index: [low, high]} for the classes present;
        ``level``, ``method``, ``n_resamples``, ``clusters``.
    """
    n = len(y)
    cluster_ids = np.arange(n) if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1]
    n_clusters = int(cluster_ids.max()) + 1 if n else 0
    method = "percentile bootstrap over " + ("images" if groups is None else "groups (objects and near-duplicates)")
    out: dict = {
        "level": level,
        "method": method,
        "n_resamples": n_resamples,
        "clusters": n_clusters,
        "accuracy": None,
        "macro_f1": None,
        "ece": None,
        "per_class_f1": {},
    }
    if n < 2 or n_clusters < 2 or n_resamples == 0:
        return out
    k = n_classes
    pred = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    correct = (pred == y).astype(float)
    edges = np.linspace(0, 1, n_bins + 1)
    bins = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    # Per-image features: one-hot confusion cell, calibration gap in its bin; summed per cluster.
    features = np.zeros((n, k * k + n_bins))
    features[np.arange(n), y * k + pred] = 1.0
    features[np.arange(n), k * k + bins] = correct - conf
    sums = np.zeros((n_clusters, features.shape[1]))
    np.add.at(sums, cluster_ids, features)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=n_resamples)
    totals = weights @ sums  # (R, features)
    cm = totals[:, : k * k].reshape(-1, k, k)
    count = cm.sum(axis=(1, 2))
    tp = np.diagonal(cm, axis1=1, axis2=2)
    support, predicted = cm.sum(axis=2), cm.sum(axis=1)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    present = support > 0
    accuracy = tp.sum(axis=1) / count
    macro = (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)
    ece = np.abs(totals[:, k * k :]).sum(axis=1) / count
    tail = 100 * (1 - level) / 2

    def interval(values: np.ndarray) -> list[float]:
        lo, hi = np.percentile(values, [tail, 100 - tail])
        return [round(float(lo), 4), round(float(hi), 4)]

    out["accuracy"], out["macro_f1"], out["ece"] = interval(accuracy), interval(macro), interval(ece)
    for c in np.flatnonzero(np.bincount(y, minlength=k)):
        # A resample without class c says nothing of its F1: those resamples are left out.
        has = present[:, c]
        if has.sum() >= 2:
            out["per_class_f1"][int(c)] = interval(f1[has, c])
    return out
