"""Metrics and their bootstrap intervals."""

import numpy as np

from astroclassify.evaluation.metrics import bootstrap_intervals, classification_metrics, with_interval


def _predictions(n: int, accuracy: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    right = rng.random(n) < accuracy
    pred = np.where(right, y, (y + 1) % 3)
    probs = np.full((n, 3), 0.1)
    probs[np.arange(n), pred] = 0.8
    return y, probs


def test_intervals_contain_the_figure_and_narrow_with_more_images():
    labels = ["a", "b", "c"]
    y, probs = _predictions(80, 0.85)
    m = classification_metrics([labels[i] for i in y], probs, labels)
    lo, hi = m["ci"]["accuracy"]
    assert lo <= m["accuracy"] <= hi and 0.05 < hi - lo < 0.25
    assert m["ci"]["macro_f1"][0] <= m["macro_f1"] <= m["ci"]["macro_f1"][1]
    for c in m["per_class"].values():
        assert c["f1_ci"][0] <= c["f1"] <= c["f1_ci"][1]
    y2, probs2 = _predictions(2000, 0.85)
    wide = hi - lo
    lo2, hi2 = bootstrap_intervals(y2, probs2, 3)["accuracy"]
    assert hi2 - lo2 < wide / 3  # about 1/sqrt(25) as wide


def test_groups_move_together():
    """Three images of each object are one piece of evidence, not three."""
    y, probs = _predictions(60, 0.8)
    tripled_y, tripled_p = np.repeat(y, 3), np.repeat(probs, 3, axis=0)
    groups = np.repeat([f"obj{i}" for i in range(60)], 3)
    by_image = bootstrap_intervals(tripled_y, tripled_p, 3)["accuracy"]
    by_group = bootstrap_intervals(tripled_y, tripled_p, 3, groups=groups)
    single = bootstrap_intervals(y, probs, 3)["accuracy"]
    assert by_group["clusters"] == 60 and "groups" in by_group["method"]
    assert by_image[1] - by_image[0] < 0.75 * (by_group["accuracy"][1] - by_group["accuracy"][0])
    assert abs((by_group["accuracy"][1] - by_group["accuracy"][0]) - (single[1] - single[0])) < 0.04


def test_no_interval_without_two_images_and_formatting():
    assert bootstrap_intervals(np.array([0]), np.array([[0.9, 0.1]]), 2)["accuracy"] is None
    assert with_interval(0.8933, [0.8228, 0.9589]) == "0.893 [0.82, 0.96]"
    assert with_interval(0.8933, None) == "0.893"
    m = classification_metrics(["a", "b"], np.array([[0.9, 0.1], [0.2, 0.8]]), ["a", "b"], intervals=False)
    assert "ci" not in m and "f1_ci" not in m["per_class"]["a"]
