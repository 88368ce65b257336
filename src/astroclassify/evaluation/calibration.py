"""Expected calibration error and temperature scaling (Guo et al. 2017)."""

from __future__ import annotations

import numpy as np

from astroclassify.inference.probabilities import softmax

__all__ = [
    "expected_calibration_error",
    "fit_sigmoid_temperatures",
    "fit_temperature",
    "reliability_bins",
    "softmax",
]


def reliability_bins(
    probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width confidence bin: mean confidence, accuracy, count."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(float)
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(float)
    mean_conf = np.bincount(idx, conf, minlength=n_bins) / np.maximum(count, 1)
    acc = np.bincount(idx, correct, minlength=n_bins) / np.maximum(count, 1)
    return mean_conf, acc, count


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE: count-weighted mean |accuracy - confidence| over ``n_bins`` bins.

    Examples
    --------
    >>> import numpy as np
    >>> round(expected_calibration_error(np.array([[0.9, 0.1], [0.6, 0.4]]), np.array([0, 1])), 3)
    0.35
    """
    if len(y_true) == 0:
        return float("nan")
    mean_conf, acc, count = reliability_bins(probs, y_true, n_bins)
    return float(np.sum(count * np.abs(acc - mean_conf)) / count.sum())


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """The temperature T > 0 minimising validation negative log-likelihood of softmax(z / T).

    A one-parameter convex problem in log T, solved by bounded scalar minimisation; no
    torch needed, so calibration can be refitted at inference-only installs.
    """
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true)
    if len(y) == 0:
        return 1.0

    def nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(y)), y].mean())

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


def fit_sigmoid_temperatures(view_logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per tag, the T > 0 minimising validation binary cross-entropy of mean_v sigmoid(z_v / T).

    ``view_logits`` is (views, N, tags), as test-time augmentation averages probabilities over
    views; ``targets`` is (N, tags) in [0, 1] (vote fractions are soft targets) with NaN where
    an image has no answer. A tag without answers keeps T = 1.
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import expit

    z = np.asarray(view_logits, dtype=np.float64)
    if z.ndim == 2:
        z = z[None]
    t = np.asarray(targets, dtype=np.float64)
    temps = np.ones(t.shape[1])
    for j in range(t.shape[1]):
        have = ~np.isnan(t[:, j])
        if not have.any():
            continue
        zj, tj = z[:, have, j], t[have, j]

        def bce(log_t: float, zj: np.ndarray = zj, tj: np.ndarray = tj) -> float:
            p = np.clip(expit(zj / np.exp(log_t)).mean(axis=0), 1e-7, 1 - 1e-7)
            return float(-(tj * np.log(p) + (1 - tj) * np.log(1 - p)).mean())

        res = minimize_scalar(bce, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
        temps[j] = float(np.exp(res.x))
    return temps
