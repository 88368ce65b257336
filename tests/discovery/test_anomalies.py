"""Anomaly detectors: the arithmetic, fitting to a model, and the evaluate/simulate contracts."""

import json
import shutil
from importlib import resources

import numpy as np
import pytest

from astroclassify.discovery.evaluation import evaluate_anomalies, simulate_marks
from astroclassify.discovery.fitting import fit_anomalies
from astroclassify.errors import ConfigError, DataError, ModelError
from astroclassify.inference.detectors import Detector, Projection, _calibrated, fit_detector
from astroclassify.modelfolder.folder import resolve_bundle as served
from tests.conftest import run_cli


def clusters(n: int, seed: int, shift: float = 0.0, space: int = 99) -> np.ndarray:
    """Points near an 8-dimensional subspace of 128 (``space`` picks the subspace)."""
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(space).normal(size=(8, 128))
    return (rng.normal(size=(n, 8)) + shift) @ basis + 0.05 * rng.normal(size=(n, 128))


@pytest.fixture(scope="module")
def detector():
    return fit_detector(clusters(300, 0), np.zeros(300, int), clusters(400, 1), false_alarm_rate=0.1)


def test_scores_flag_about_the_false_alarm_rate_and_rank_outliers(detector):
    typical = detector.score(detector.projection.compact(clusters(2000, 2)))
    assert 0.06 < typical.unusual.mean() < 0.14  # 10% asked for, calibrated on 400 other images
    odd = detector.score(detector.projection.compact(clusters(50, 3, space=98)))  # off the reference's subspace
    assert odd.unusual.all() and odd.anomaly_score.min() > typical.anomaly_score.max() - 0.05
    assert set(typical.detectors) == {"knn", "mahalanobis", "isolation_forest"}  # energy needs logits


def test_the_calibrated_score_keeps_ranking_past_the_calibration_range():
    calibration = np.linspace(0, 1, 50)
    s = _calibrated(np.array([-5, -1, 0.5, 1.0, 2.0, 5.0]), calibration)
    assert np.all(np.diff(s) > 0) and s[0] > 0 and s[-1] < 1


def test_a_saved_detector_scores_the_same(detector, tmp_path):
    x = detector.projection.compact(clusters(20, 4, shift=1.0))
    detector.save(tmp_path / "d")
    loaded = Detector.load(tmp_path / "d")
    np.testing.assert_allclose(loaded.score(x).anomaly_score, detector.score(x).anomaly_score, atol=1e-6)
    (tmp_path / "d" / "detector.json").write_text("{not json")
    with pytest.raises(ModelError, match="not a readable anomaly detector"):
        Detector.load(tmp_path / "d")


def test_the_vectorised_forest_matches_scikit_learn(detector):
    from sklearn.ensemble import IsolationForest

    reference = detector.reference
    forest = IsolationForest(n_estimators=100, random_state=0).fit(reference)
    x = detector.projection.compact(clusters(30, 5, shift=0.5))
    np.testing.assert_allclose(detector.forest.score(x), -forest.score_samples(x), atol=1e-5)


def test_fitting_needs_enough_held_out_images():
    with pytest.raises(ModelError, match="at least 20 held-out"):
        fit_detector(clusters(50, 0), np.zeros(50, int), clusters(5, 1))
    with pytest.raises(ModelError, match="unknown detectors"):
        fit_detector(clusters(50, 0), np.zeros(50, int), clusters(30, 1), weights={"magic": 1.0})


def test_projection_keeps_what_the_axes_leave_over():
    p = Projection.fit(clusters(200, 0), k=8)
    inside = p.compact(clusters(10, 1))[:, -1]
    outside = p.compact(np.random.default_rng(0).normal(size=(10, 128)))[:, -1]
    assert outside.min() > 5 * inside.max()


@pytest.fixture(scope="module")
def nebula_detector(tmp_path_factory):
    """The bundled dso model's embedding, a detector fitted on half the Hubble nebulae."""
    out = tmp_path_factory.mktemp("det") / "nebulae"
    fitted = fit_anomalies("dso", "hubble-dso:nebula", out=out, fraction=0.5, held_out=0.3)
    return fitted


def test_fit_writes_a_detector_and_what_it_used(nebula_detector):
    d = nebula_detector
    assert d.n_reference > 20 and d.n_held_out >= 20
    assert (d.path / "detector.json").is_file() and (d.path / "fitted.csv").is_file()
    info = json.loads((d.path / "detector.json").read_text())
    assert info["model"] == "dso" and "hubble-dso:nebula" in info["reference"] and len(info["id"]) == 12


def test_evaluate_leaves_out_fitted_images_and_has_a_stable_shape(nebula_detector):
    ev = evaluate_anomalies("dso", "hubble-dso:nebula", "nasa-planets-galaxies:planet", detector=nebula_detector.path)
    m = ev.metrics
    assert m["excluded_fitted"] == nebula_detector.n_reference + nebula_detector.n_held_out
    assert m["n_in"] + m["excluded_fitted"] == 182 and m["n_out"] == 102  # hubble-dso has 182 nebulae
    for key in ("n_in", "n_out", "auroc", "fpr_at_95_tpr", "precision_at_k", "detectors", "auroc_ci", "unusual_rate"):
        assert key in m
    assert set(m["precision_at_k"]) == {"10", "20", "50"}
    assert set(m["detectors"]) == {"knn", "mahalanobis", "isolation_forest", "energy"}
    assert m["auroc"] > 0.8  # planets are nothing like nebulae


def test_simulate_replays_marks(nebula_detector):
    sim = simulate_marks(
        "dso",
        ["hubble-dso:nebula", "nasa-planets-galaxies:planet"],
        "planet",
        marks=9,
        rounds=3,
        detector=nebula_detector.path,
    )
    m = sim.metrics
    for key in ("auroc_before", "auroc_after", "precision_at_20_before", "precision_at_20_after", "marks"):
        assert key in m
    assert m["marks"] == 9 and m["rounds"] == 3 and 0 <= m["found"] <= 9


def test_bad_requests_are_clear(nebula_detector, tmp_path):
    with pytest.raises(DataError, match="no images labelled comet"):
        evaluate_anomalies("dso", "hubble-dso:comet", "hubble-dso:nebula", detector=nebula_detector.path)
    with pytest.raises(ModelError, match="no anomaly detector"):
        evaluate_anomalies("dso", "hubble-dso", "hubble-dso", detector=tmp_path / "nothing")
    with pytest.raises(ConfigError, match="bundled and ships its detector"):
        fit_anomalies("dso", "hubble-dso:nebula")
    with pytest.raises(ConfigError, match="need at least one mark per round"):
        simulate_marks("dso", "hubble-dso", "nebula", marks=2, rounds=3, detector=nebula_detector.path)


def test_an_old_model_gets_its_embedding_output_without_changing_its_answers(tmp_path, shared_data):
    import onnx

    from astroclassify.inference.predictor import OnnxPredictor

    old = tmp_path / "old"
    shutil.copytree(str(resources.files("astroclassify") / "bundled" / "dso"), old)
    shutil.rmtree(old / "detector")
    proto = onnx.load(str(old / "model.onnx"))
    keep = [o for o in proto.graph.output if o.name != "embedding"]
    del proto.graph.output[:]
    proto.graph.output.extend(keep)  # as exported before 0.3
    onnx.save(proto, str(old / "model.onnx"))
    image = shared_data / "hubble-dso/galaxy/heic0506a.jpg"
    before = next(OnnxPredictor(old).run([image])).probabilities
    result = run_cli("anomalies", "fit", "--model", str(old), "--data", "hubble-dso:galaxy")
    assert result.returncode == 0, result.stderr
    after = next(OnnxPredictor(old).run([image]))
    np.testing.assert_array_equal(after.probabilities, before)
    assert after.anomaly_score is not None and (served(old) / "detector" / "detector.json").is_file()
