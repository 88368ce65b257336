"""Classification metrics as one JSON-ready dict (the ``evaluate --json`` contract)."""

from __future__ import annotations

import numpy as np

from astroclassify.evaluation.calibration import expected_calibration_error

__all__ = ["classification_metrics"]


def classification_metrics(y_true: list[str], probs: np.ndarray, labels: list[str], *, n_bins: int = 15) -> dict:
    """Accuracy, macro-F1, per-class P/R/F1/support, confusion matrix and ECE.

    ``macro_f1`` averages over the labels present in ``y_true`` (a 3-class model evaluated
    on a galaxy/nebula set is scored over galaxy and nebula; predictions of the absent
    class still count as errors). Every label of the model appears in ``per_class``.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    index = {label: i for i, label in enumerate(labels)}
    y = np.array([index[t] for t in y_true], dtype=int)
    pred = probs.argmax(axis=1) if len(y) else np.zeros(0, dtype=int)
    all_idx = list(range(len(labels)))
    present = sorted(set(y.tolist()))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=all_idx, zero_division=0)
    per_class = {
        labels[i]: {
            "precision": round(float(p[i]), 4),
            "recall": round(float(r[i]), 4),
            "f1": round(float(f[i]), 4),
            "support": int(s[i]),
        }
        for i in all_idx
    }
    macro = float(np.mean([f[i] for i in present])) if present else float("nan")
    return {
        "n": int(len(y)),
        "accuracy": round(float((pred == y).mean()), 4) if len(y) else float("nan"),
        "macro_f1": round(macro, 4),
        "ece": round(expected_calibration_error(probs, y, n_bins), 4),
        "per_class": per_class,
        "confusion_matrix": {
            "labels": list(labels),
            "matrix": confusion_matrix(y, pred, labels=all_idx).tolist(),
        },
    }
