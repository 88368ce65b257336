import numpy as np

from astroclassify.evaluation.calibration import (
    expected_calibration_error,
    fit_sigmoid_temperatures,
    fit_temperature,
    softmax,
)
from astroclassify.evaluation.metrics import classification_metrics


def test_ece_known_values():
    probs = np.array([[0.9, 0.1], [0.6, 0.4]])
    # bins: 0.9 correct (gap 0.1), 0.6 wrong (gap 0.6) → (0.1 + 0.6) / 2
    assert abs(expected_calibration_error(probs, np.array([0, 1])) - 0.35) < 1e-9
    perfect = np.array([[1.0, 0.0]] * 4)
    assert expected_calibration_error(perfect, np.zeros(4, int)) == 0.0


def test_temperature_recovers_overconfidence():
    rng = np.random.default_rng(0)
    n, true_t = 4000, 3.0
    calibrated = rng.normal(0, 2, (n, 3))
    y = np.array([rng.choice(3, p=p) for p in softmax(calibrated)])
    overconfident = calibrated * true_t
    t = fit_temperature(overconfident, y)
    assert abs(t - true_t) < 0.3
    before = expected_calibration_error(softmax(overconfident), y)
    after = expected_calibration_error(softmax(overconfident, t), y)
    assert after < before / 2 and after < 0.03


def test_sigmoid_temperatures_per_tag_over_views_with_blanks():
    rng = np.random.default_rng(1)
    n = 3000
    z = rng.normal(0, 2, (n, 2))
    yes = (rng.random((n, 2)) < 1 / (1 + np.exp(-z))).astype(float)
    targets = yes.copy()
    targets[:, 1] = 1 / (1 + np.exp(-z[:, 1]))  # a vote fraction: a soft target
    targets[::3, 0] = np.nan  # no answer: not counted
    views = np.stack([z * np.array([4.0, 0.5]) + rng.normal(0, 0.01, z.shape) for _ in range(4)])
    temps = fit_sigmoid_temperatures(views, targets)
    assert abs(temps[0] - 4.0) < 0.6 and abs(temps[1] - 0.5) < 0.05  # over- and under-confident
    assert fit_sigmoid_temperatures(views, np.full((n, 2), np.nan)).tolist() == [1.0, 1.0]
    p = 1 / (1 + np.exp(-views[:, :, 0] / temps[0])).mean(0)
    have = ~np.isnan(targets[:, 0])
    ece = expected_calibration_error(np.stack([1 - p, p], 1)[have], targets[have, 0].astype(int))
    raw = 1 / (1 + np.exp(-views[:, :, 0])).mean(0)
    assert ece < expected_calibration_error(np.stack([1 - raw, raw], 1)[have], targets[have, 0].astype(int)) / 2


def test_metrics_shape_and_absent_classes():
    labels = ["galaxy", "nebula", "planet"]
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    m = classification_metrics(["galaxy", "nebula", "nebula", "nebula"], probs, labels)
    assert m["n"] == 4 and m["accuracy"] == 0.5
    assert set(m) >= {"n", "accuracy", "macro_f1", "per_class", "confusion_matrix", "ece"}
    assert m["confusion_matrix"]["labels"] == labels
    assert m["confusion_matrix"]["matrix"] == [[1, 0, 0], [1, 1, 1], [0, 0, 0]]
    assert m["per_class"]["planet"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    # null, not 0.0: averaging per_class over its numbers gives the macro-F1 (a 0.0 would pull it down)
    f1s = [c["f1"] for c in m["per_class"].values() if c["f1"] is not None]
    assert abs(sum(f1s) / len(f1s) - m["macro_f1"]) < 1e-3
    # macro-F1 over the labels present (galaxy, nebula); the planet prediction is still an error
    f1_g, f1_n = 2 / 3, 0.5
    assert abs(m["macro_f1"] - (f1_g + f1_n) / 2) < 1e-3
