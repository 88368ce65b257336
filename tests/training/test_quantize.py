"""INT8 export: a model folder that loads like any other, with its cost measured on the test split."""

import json

import pytest

from astroclassify.errors import ConfigError
from astroclassify.inference.predictor import OnnxPredictor
from astroclassify.modelfolder.folder import resolve_bundle as served
from astroclassify.training.quantize import quantize_model
from tests.conftest import run_cli


def test_an_int8_copy_loads_predicts_and_says_what_it_cost(tiny_model, tiny_dataset, tmp_path):
    result = quantize_model(tiny_model, tmp_path / "int8", calibration_images=24)
    meta = json.loads((served(tmp_path / "int8") / "model.json").read_text())
    q = meta["quantization"]
    assert meta["name"] == "tiny-int8" and q["calibration_images"] == 24
    assert q["fp32"]["n"] == q["int8"]["n"] > 0 and q["speedup"] == round(result.speedup, 2)
    assert abs(q["int8"]["accuracy"] - q["fp32"]["accuracy"]) <= 0.2  # 10 synthetic test images
    card = (served(tmp_path / "int8") / "MODEL_CARD.md").read_text()
    assert "## Quantization" in card and "images/s" in card
    assert (served(tmp_path / "int8") / "confusion_matrix.png").is_file()
    predictor = OnnxPredictor(tmp_path / "int8")
    outcome = next(predictor.run([tiny_dataset / "galaxy" / "img000.png"]))
    assert outcome.error is None and predictor.labels == OnnxPredictor(tiny_model).labels
    with pytest.raises(ConfigError, match="already holds a model"):
        quantize_model(tiny_model, tmp_path / "int8")
    with pytest.raises(ConfigError, match="must be a new folder"):
        quantize_model(tiny_model, tiny_model)


def test_export_needs_a_format(tiny_model, tmp_path):
    res = run_cli("export", str(tiny_model), "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "choose a format: --int8" in res.stderr


def test_every_zoo_head_quantizes_mobilenet_v3_included(tiny_dataset, tmp_path):
    """MobileNetV3's CAM reuses a head weight along another axis; it stays float, the rest is INT8."""
    from astroclassify.training.train import train
    from tests.conftest import small_cnn_config

    out = tmp_path / "mnv3"
    train(small_cnn_config(tiny_dataset, out, model="mobilenet_v3_small", image_size=64, epochs=1, folds=2))
    quantize_model(out, tmp_path / "mnv3-int8", calibration_images=16)
    predictor = OnnxPredictor(tmp_path / "mnv3-int8")
    explanation = predictor.explain(tiny_dataset / "galaxy" / "img000.png")
    assert explanation.heatmap.shape[0] > 0 and explanation.heatmap.max() <= 1.0


@pytest.mark.slow
def test_the_readme_export_of_the_bundled_model_with_its_detector(tmp_path, shared_data):
    """`astroclassify export dso --int8` (a README command): the detector fit renders the card from
    model.json, which must hold the INT8 figures by then (it crashed with a template error)."""
    res = run_cli(
        "export", "dso", "--int8", "--out", str(tmp_path / "dso-int8"), env={"ASTROCLASSIFY_DATA_DIR": str(shared_data)}
    )
    assert res.returncode == 0, res.stderr
    folder = served(tmp_path / "dso-int8")
    meta = json.loads((folder / "model.json").read_text())
    assert meta["quantization"]["int8"]["n"] > 0 and (folder / "detector" / "detector.json").is_file()
    assert "| INT8 |" in (folder / "MODEL_CARD.md").read_text()
