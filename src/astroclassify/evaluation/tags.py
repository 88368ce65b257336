"""Scores of a head's tags (vote fractions, multi-label answers): error, ranking and calibration per tag."""

from __future__ import annotations

import numpy as np

from astroclassify.evaluation.calibration import expected_calibration_error
from astroclassify.evaluation.metrics import group_resamples

__all__ = ["tag_scores", "tag_scores_with_intervals"]


def tag_scores(pred: np.ndarray, targets: np.ndarray, names: list[str]) -> dict[str, dict[str, float]]:
    """Per tag: mean absolute error of the predicted fraction; AUROC, average precision and
    calibration error (top-label ECE of the yes/no answer) where the target is 0/1.

    A NaN target is an image with no answer for that tag: left out, never read as 0.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    out = {}
    for j, name in enumerate(names):
        have = ~np.isnan(targets[:, j])
        t, p = targets[have, j], pred[have, j]
        row: dict[str, float] = {"n": int(have.sum())}
        if have.any():
            row["mae"] = float(np.abs(t - p).mean())
            if set(np.unique(t)) <= {0.0, 1.0} and len(np.unique(t)) == 2:
                row["auroc"] = float(roc_auc_score(t, p))
                row["average_precision"] = float(average_precision_score(t, p))
                row["ece"] = expected_calibration_error(np.stack([1 - p, p], 1), t.astype(int), n_bins=10)
        out[name] = row
    return out


def tag_scores_with_intervals(
    pred: np.ndarray, targets: np.ndarray, names: list[str], groups: np.ndarray, rounds: int = 1000
) -> dict[str, dict]:
    """``tag_scores`` with percentile-bootstrap 95% intervals over groups (an object's images resampled together)."""
    scores: dict[str, dict] = tag_scores(pred, targets, names)
    draws: dict[str, dict[str, list[float]]] = {}
    for rows in group_resamples(groups, rounds):
        for name, row in tag_scores(pred[rows], targets[rows], names).items():
            for k in ("mae", "auroc", "average_precision", "ece"):
                if k in row:
                    draws.setdefault(name, {}).setdefault(k, []).append(row[k])
    for name, metrics in draws.items():
        scores[name]["ci"] = {
            k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in metrics.items()
        }
    return scores
