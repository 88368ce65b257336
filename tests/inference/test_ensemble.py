"""`astroclassify ensemble`: one ONNX model averaging its members' calibrated probabilities."""

import json

import numpy as np
import pytest

from astroclassify.errors import ConfigError
from astroclassify.inference.ensemble import merge_models
from astroclassify.inference.predictor import OnnxPredictor
from astroclassify.modelfolder.folder import resolve_bundle as served
from astroclassify.training.train import train
from tests.conftest import make_sky, run_cli, small_cnn_config


def _tiny(tiny_dataset, out, **kw):
    return train(small_cnn_config(tiny_dataset, out, tta="rot4", **kw)).path


@pytest.fixture(scope="module")
def members(tiny_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("members")
    a = _tiny(tiny_dataset, root / "a", seed=0)
    b = _tiny(tiny_dataset, root / "b", seed=1, splits=str(a / "splits.csv"))
    return a, b


def test_ensemble_averages_calibrated_probabilities_and_loads_like_any_model(members, tiny_dataset, tmp_path):
    a, b = members
    out = tmp_path / "ens"
    res = run_cli("ensemble", str(a), str(b), "--out", str(out), "--name", "duo")
    assert res.returncode == 0, res.stderr
    assert "never trained on by any member" in res.stdout
    meta = json.loads((served(out) / "model.json").read_text())
    assert meta["name"] == "duo" and [m["path"] for m in meta["ensemble"]["members"]] == [str(a), str(b)]
    assert meta["metrics"]["test"]["all"]["n"] > 0 and (served(out) / "MODEL_CARD.md").is_file()
    images = np.stack([make_sky("galaxy", 48, seed=900), make_sky("nebula", 48, seed=901)])
    # One view: the mean of the members' calibrated probabilities, sharpened or softened by the
    # ensemble's own temperature (fitted on the shared validation split). With TTA views the
    # ensemble averages its log-probabilities over views, as every model averages its logits.
    mean = np.mean([OnnxPredictor(m).predict_proba(images, "none") for m in (a, b)], axis=0)
    assert meta["temperature_fitted_on"] == "val" and meta["temperature"] > 0
    expected = mean ** (1 / meta["temperature"])
    expected /= expected.sum(axis=1, keepdims=True)
    assert np.allclose(OnnxPredictor(out).predict_proba(images, "none"), expected, atol=1e-5)
    pred = run_cli("predict", "--model", str(out), "--json", str(tiny_dataset / "galaxy" / "img000.png"))
    assert pred.returncode == 0 and json.loads(pred.stdout)["label"] in ("galaxy", "nebula")
    explained = run_cli(
        "explain", "--model", str(out), str(tiny_dataset / "galaxy" / "img000.png"), "--out", str(tmp_path / "e.png")
    )
    assert explained.returncode == 0, explained.stderr


def test_members_with_different_splits_are_refused(members, tiny_dataset, tmp_path):
    a, _ = members
    other = _tiny(tiny_dataset, tmp_path / "other", seed=5, test_frac=0.3)
    with pytest.raises(ConfigError, match="same splits.csv"):
        merge_models([a, other], tmp_path / "bad")
    with pytest.raises(ConfigError, match="at least two"):
        merge_models([a], tmp_path / "bad")
