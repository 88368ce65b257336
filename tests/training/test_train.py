import json

import pytest

from astroclassify.errors import ConfigError
from astroclassify.training.config import TrainConfig, apply_overrides
from astroclassify.training.train import lr_at, train
from tests.conftest import make_sky, run_cli, write_image


def test_overrides_are_type_checked():
    cfg = apply_overrides(TrainConfig(), ["epochs=3", "--lr=0.01", "flips=false", "data=a,b"])
    assert (cfg.epochs, cfg.lr, cfg.flips, cfg.data) == (3, 0.01, False, ("a", "b"))
    with pytest.raises(ConfigError, match="unknown training option"):
        apply_overrides(TrainConfig(), ["epoch=3"])
    with pytest.raises(ConfigError, match="cannot read"):
        apply_overrides(TrainConfig(), ["epochs=many"])


def test_lr_schedule_warms_up_then_decays():
    lrs = [lr_at(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lrs[-1] == pytest.approx(0.01, abs=0.01)


@pytest.fixture(scope="module")
def tiny_model(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "tiny"
    cfg = TrainConfig(
        data=(str(tiny_dataset),),
        out=str(out),
        model="small_cnn",
        pretrained=False,
        image_size=48,
        epochs=12,
        batch_size=8,
        lr=3e-3,
        patience=20,
        folds=3,
    )
    train(cfg)
    return out


def test_training_writes_a_complete_bundle(tiny_model):
    for name in (
        "model.onnx",
        "model.json",
        "MODEL_CARD.md",
        "splits.csv",
        "history.json",
        "history.png",
        "confusion_matrix.png",
        "reliability.png",
        "checkpoint.pt",
    ):
        assert (tiny_model / name).is_file(), name
    meta = json.loads((tiny_model / "model.json").read_text())
    assert meta["labels"] == ["galaxy", "nebula"]
    assert meta["image_size"] == 48 and meta["temperature"] > 0
    test = meta["metrics"]["test"]["all"]
    assert test["n"] >= 6
    assert test["accuracy"] >= 0.8  # blobs vs streaks is easy; a broken loop fails this
    history = json.loads((tiny_model / "history.json").read_text())
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_evaluate_json_reproduces_the_training_metrics(tiny_model, tiny_dataset):
    res = run_cli("evaluate", "--model", str(tiny_model), "--data", str(tiny_dataset), "--json")
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout)
    for key in ("n", "accuracy", "macro_f1", "per_class", "confusion_matrix", "ece"):
        assert key in m
    stored = json.loads((tiny_model / "model.json").read_text())["metrics"]["test"]["all"]
    assert m["n"] == stored["n"]  # auto split: only the held-out test rows
    assert m["accuracy"] == stored["accuracy"] and m["ece"] == stored["ece"]
    assert sum(m["excluded_seen_in_training"].values()) == 48 - m["n"]
    for label in ("galaxy", "nebula"):
        assert set(m["per_class"][label]) == {"precision", "recall", "f1", "support"}


def test_evaluate_reports_unknown_labels_and_bad_files(tiny_model, tmp_path):
    root = tmp_path / "other"
    write_image(root / "a.png", make_sky("galaxy", seed=99))
    write_image(root / "b.png", make_sky("nebula", seed=98))
    write_image(root / "c.png", make_sky("galaxy", seed=97))
    (root / "d.png").write_bytes(b"not an image")
    (root / "manifest.csv").write_text("file,label\na.png,galaxy\nb.png,nebula\nc.png,star\nd.png,galaxy\n")
    res = run_cli("evaluate", "--model", str(tiny_model), "--data", str(root), "--json")
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout)
    assert m["n"] == 2 and m["unknown_labels"] == {"star": 1}
    assert len(m["failed"]) == 1 and "d.png" in m["failed"][0]
    assert "error: other/d.png" in res.stderr and "Traceback" not in res.stderr
    human = run_cli("evaluate", "--model", str(tiny_model), "--data", str(root), "--report-dir", str(tmp_path / "rep"))
    assert human.returncode == 0 and "macro-F1" in human.stdout
    assert (tmp_path / "rep" / "report.html").is_file() and (tmp_path / "rep" / "confusion_matrix.png").is_file()


def test_predict_cli_on_trained_model(tiny_model, tiny_dataset, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("<html>not an image</html>")
    res = run_cli("predict", str(tiny_dataset / "galaxy"), str(bad), "--model", str(tiny_model), "--json")
    assert res.returncode == 1  # a bad file fails the run, after the good ones
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    good = [x for x in lines if "label" in x]
    assert len(good) == 24
    assert sum(x["label"] == "galaxy" for x in good) >= 20
    for x in good:
        assert set(x) == {"file", "label", "confidence", "probabilities"}
        assert abs(sum(x["probabilities"].values()) - 1) < 1e-4
        assert x["confidence"] == max(x["probabilities"].values())
    assert [x for x in lines if "error" in x][0]["file"] == str(bad)
    assert res.stderr.count("error:") == 1 and "Traceback" not in res.stderr


def test_resume_continues_from_checkpoint(tiny_dataset, tmp_path):
    base = dict(
        data=(str(tiny_dataset),),
        out=str(tmp_path / "m"),
        model="small_cnn",
        pretrained=False,
        image_size=32,
        batch_size=16,
        patience=10,
    )
    train(TrainConfig(epochs=2, **base))
    first = json.loads((tmp_path / "m" / "history.json").read_text())
    # Same config, more epochs: a fresh run would differ; the checkpoint config must match to resume.
    import torch

    ck = torch.load(tmp_path / "m" / "checkpoint.pt", weights_only=False)
    assert ck["epoch"] == 1 and len(ck["history"]) == 2
    train(TrainConfig(epochs=2, **base))  # resumes at the end: nothing more to train
    again = json.loads((tmp_path / "m" / "history.json").read_text())
    assert again == first


def test_cross_validation_writes_suspects(tiny_dataset, tmp_path):
    res = run_cli(
        "train",
        "--data",
        str(tiny_dataset),
        "--out",
        str(tmp_path / "cv"),
        "--model",
        "small_cnn",
        "--epochs",
        "2",
        "--image-size",
        "32",
        "--cv",
        "3",
        "--set",
        "pretrained=false",
        "--quiet",
    )
    assert res.returncode == 0, res.stderr
    cv = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert len(cv["folds"]) == 3 and 0 <= cv["accuracy_mean"] <= 1
    assert isinstance(cv["suspected_label_errors"], list)


def test_train_cli_errors_are_one_line(tiny_dataset, tmp_path):
    res = run_cli("train", "--data", str(tiny_dataset), "--out", str(tmp_path / "x"), "--model", "resnet9000")
    assert res.returncode == 2 and "unknown model 'resnet9000'" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "not" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("train", "--data", str(tiny_dataset), "--out", str(tmp_path / "x"), "--set", "epoch=2")
    assert res.returncode == 2 and "unknown training option" in res.stderr
