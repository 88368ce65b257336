import dataclasses
import json

import numpy as np
import pytest

from astroclassify.errors import ConfigError
from astroclassify.modelfolder.folder import resolve_bundle as served
from astroclassify.training.config import TrainConfig, apply_overrides
from astroclassify.training.loop import lr_at
from astroclassify.training.train import train
from tests.conftest import make_sky, run_cli, small_cnn_config, write_image


def test_overrides_are_type_checked():
    cfg = apply_overrides(TrainConfig(), ["epochs=3", "--lr=0.01", "flips=false", "data=a,b"])
    assert (cfg.epochs, cfg.lr, cfg.flips, cfg.data) == (3, 0.01, False, ("a", "b"))
    with pytest.raises(ConfigError, match="unknown training option"):
        apply_overrides(TrainConfig(), ["epoch=3"])
    with pytest.raises(ConfigError, match="cannot read"):
        apply_overrides(TrainConfig(), ["epochs=many"])


def test_one_cycle_and_plateau_schedules():
    one = [lr_at(s, 100, 10, 1.0, "onecycle") for s in range(100)]
    assert one[0] == pytest.approx(1 / 25) and max(one) == pytest.approx(1.0, abs=1e-3)
    assert int(np.argmax(one)) in (29, 30) and one[-1] < 1e-3
    flat = [lr_at(s, 100, 10, 1.0, "plateau") for s in range(100)]
    assert flat[9] == flat[99] == 1.0  # the loop, not the step, lowers it


def test_lr_schedule_warms_up_then_decays():
    lrs = [lr_at(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert lrs[-1] == pytest.approx(0.01, abs=0.01)


def test_training_writes_a_complete_bundle(tiny_model):
    version = served(tiny_model)  # the home keeps versions; the pointer names the one served
    assert version.parent == tiny_model / "versions"
    for name in (
        "model.onnx",
        "model.json",
        "MODEL_CARD.md",
        "splits.csv",
        "history.json",
        "history.png",
        "confusion_matrix.png",
        "reliability.png",
        "VERSION.json",
    ):
        assert (version / name).is_file(), name
    for name in ("checkpoint.pt", "splits.csv"):  # training's working files stay beside the versions
        assert (tiny_model / name).is_file(), name
    info = json.loads((version / "VERSION.json").read_text())
    assert info["version"] == version.name and info["made_by"] == "train" and info["parent"] is None
    assert info["config"]["model"] and info["data"]["splits_sha256"] and info["scores"]["n"] >= 6
    meta = json.loads((served(tiny_model) / "model.json").read_text())
    assert meta["labels"] == ["galaxy", "nebula"]
    assert meta["image_size"] == 48 and meta["temperature"] > 0
    test = meta["metrics"]["test"]["all"]
    assert test["n"] >= 6
    assert test["accuracy"] >= 0.8  # blobs vs streaks is easy; a broken loop fails this
    history = json.loads((served(tiny_model) / "history.json").read_text())
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_evaluate_json_reproduces_the_training_metrics(tiny_model, tiny_dataset):
    res = run_cli("evaluate", "--model", str(tiny_model), "--data", str(tiny_dataset), "--json")
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout)
    for key in ("n", "accuracy", "macro_f1", "per_class", "confusion_matrix", "ece"):
        assert key in m
    stored = json.loads((served(tiny_model) / "model.json").read_text())["metrics"]["test"]["all"]
    assert m["n"] == stored["n"]  # auto split: only the held-out test rows
    assert m["accuracy"] == stored["accuracy"] and m["ece"] == stored["ece"]
    assert sum(m["excluded_seen_in_training"].values()) == 48 - m["n"]
    for label in ("galaxy", "nebula"):
        c = m["per_class"][label]
        assert set(c) == {"precision", "recall", "f1", "support", "f1_ci"}
        assert c["f1_ci"][0] <= c["f1"] <= c["f1_ci"][1]  # a 95% interval around the figure


def test_evaluate_reports_unknown_labels_and_bad_files(tiny_model, tmp_path):
    root = tmp_path / "other"
    write_image(root / "a.png", make_sky("galaxy", seed=99))
    write_image(root / "b.png", make_sky("nebula", seed=98))
    write_image(root / "c.png", make_sky("galaxy", seed=97))
    (root / "d.png").write_bytes(b"not an image")
    (root / "manifest.csv").write_text("file,label\na.png,galaxy\nb.png,nebula\nc.png,star\nd.png,galaxy\n")
    res = run_cli("evaluate", "--model", str(tiny_model), "--data", str(root), "--json")
    assert res.returncode == 1, res.stderr  # metrics for the valid images, then a non-zero exit
    m = json.loads(res.stdout)
    assert m["n"] == 2 and m["unknown_labels"] == {"star": 1}
    assert "labelled 'star', a label model 'tiny' does not know" in res.stderr
    assert len(m["failed"]) == 1 and "d.png" in m["failed"][0]
    assert "error: other/d.png" in res.stderr and "Traceback" not in res.stderr
    human = run_cli("evaluate", "--model", str(tiny_model), "--data", str(root), "--report-dir", str(tmp_path / "rep"))
    assert human.returncode == 1 and "macro-F1" in human.stdout
    assert (tmp_path / "rep" / "report-other-auto.html").is_file()
    assert (tmp_path / "rep" / "report-other-auto-confusion_matrix.png").is_file()
    beside = run_cli("evaluate", "--model", str(tiny_model), "--data", str(root))
    report = tiny_model / "evaluation" / served(tiny_model).name / "report-other-auto.html"  # beside the versions
    assert beside.returncode == 1 and report.is_file()


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
        assert set(x) == {"file", "label", "confidence", "probabilities", "anomaly_score", "unusual", "tags"}
        assert x["tags"] == {}  # a model without tag heads
        assert x["anomaly_score"] is None and x["unusual"] is None  # 7 validation images: too few to calibrate one
        assert abs(sum(x["probabilities"].values()) - 1) < 1e-4
        assert x["confidence"] == max(x["probabilities"].values())
    assert [x for x in lines if "error" in x][0]["file"] == str(bad)
    assert res.stderr.count("error:") == 1 and "Traceback" not in res.stderr


def test_interrupted_training_resumes_to_the_same_result(tiny_dataset, tmp_path):
    base = dict(
        data=(str(tiny_dataset),),
        model="small_cnn",
        pretrained=False,
        image_size=32,
        batch_size=16,
        epochs=3,
        patience=10,
        ema_decay=0.9,
    )
    train(TrainConfig(out=str(tmp_path / "a"), **base))

    def interrupt_at_epoch_3(description, total):
        if description == "epoch 3/3":
            raise KeyboardInterrupt
        return lambda n=1: None

    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(out=str(tmp_path / "b"), **base), progress=interrupt_at_epoch_3)
    assert not (tmp_path / "b" / "model.onnx").exists()
    train(TrainConfig(out=str(tmp_path / "b"), **base))  # picks up checkpoint.pt after epoch 2

    def strip(path):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in json.loads(path.read_text())]

    assert strip(served(tmp_path / "b") / "history.json") == strip(served(tmp_path / "a") / "history.json")
    meta_a = json.loads((served(tmp_path / "a") / "model.json").read_text())["metrics"]["test"]["all"]
    meta_b = json.loads((served(tmp_path / "b") / "model.json").read_text())["metrics"]["test"]["all"]
    assert meta_a == meta_b


def test_cross_validation_scores_folds_and_finds_flipped_labels(tiny_dataset, tmp_path):
    """Three folds of the non-test images, each scored once; six flipped labels are the suspects."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    lines = (data / "manifest.csv").read_text().splitlines()
    flipped = set()
    for i in (3, 10, 17, 24, 31, 38):  # one image of six different releases
        file, label, release = lines[i].split(",")
        lines[i] = f"{file},{'nebula' if label == 'galaxy' else 'galaxy'},{release}"
        flipped.add(file)
    (data / "manifest.csv").write_text("\n".join(lines) + "\n")
    res = run_cli(
        "train", "--data", str(data), "--out", str(tmp_path / "cv"), "--model", "small_cnn", "--epochs", "8",
        "--image-size", "32", "--cv", "3", "--set", "pretrained=false", "--set", "lr=3e-3", "--set", "batch_size=8",
        "--quiet",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    cv = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert [f["fold"] for f in cv["folds"]] == [0, 1, 2]
    assert sum(f["n"] for f in cv["folds"]) == 38  # 48 images less the 10 of the seeded test split, each scored once
    assert cv["accuracy_mean"] == pytest.approx(sum(f["accuracy"] for f in cv["folds"]) / 3, abs=1e-3)
    suspects = {s["key"].partition("/")[2] for s in cv["suspected_label_errors"]}
    assert len(suspects) >= 2 and suspects <= flipped, suspects  # flipped labels found, no true label doubted
    assert 0.6 <= cv["accuracy_mean"] < 1.0  # the flipped labels cost what they must: no leak, no perfect score


def test_train_cli_errors_are_one_line(tiny_dataset, tmp_path):
    res = run_cli("train", "--data", str(tiny_dataset), "--out", str(tmp_path / "x"), "--model", "resnet9000")
    assert res.returncode == 2 and "unknown model 'resnet9000'" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "not" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("train", "--data", str(tiny_dataset), "--out", str(tmp_path / "x"), "--set", "epoch=2")
    assert res.returncode == 2 and "unknown training option" in res.stderr
    checkpoint = tmp_path / "x" / "checkpoint.pt"
    checkpoint.parent.mkdir(exist_ok=True)
    checkpoint.write_bytes(b"an earlier run's")
    res = run_cli("train", "--data", str(tiny_dataset), "--out", str(tmp_path / "x"), "--set", "tta=rot8", "--fresh")
    assert res.returncode == 2 and "tta must be one of none, rot4, rot4flip" in res.stderr
    assert checkpoint.exists()  # a refused run deletes nothing


def test_bad_manifest_rows_are_reported_and_valid_rows_still_used(tiny_dataset, tmp_path):
    """Missing files, duplicate rows, an undecodable file: one line each, exit 1, model still written."""
    import shutil

    root = tmp_path / "messy"
    shutil.copytree(tiny_dataset, root)
    (root / "galaxy" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    lines = (root / "manifest.csv").read_text().splitlines()
    lines += ["galaxy/missing.png,galaxy,r900", lines[1], "galaxy/broken.png,galaxy,r901"]
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    check = run_cli("data", "check", str(root))
    assert check.returncode == 1
    for needle in ("missing.png: file not found", "duplicate row", "broken.png: PNG data is truncated or corrupt"):
        assert needle in check.stderr
    assert "Traceback" not in check.stderr

    res = run_cli(
        "train",
        "--data",
        str(root),
        "--out",
        str(tmp_path / "m"),
        "--model",
        "small_cnn",
        "--epochs",
        "1",
        "--image-size",
        "32",
        "--set",
        "pretrained=false",
        "--quiet",
    )
    assert res.returncode == 1, res.stderr
    errors = [x for x in res.stderr.splitlines() if x.startswith("error: ")]
    assert len(errors) == 3 and "Traceback" not in res.stderr
    assert (served(tmp_path / "m") / "model.onnx").is_file()
    meta = json.loads((served(tmp_path / "m") / "model.json").read_text())
    assert sum(sum(c.values()) for c in meta["data"]["counts"]["messy"].values()) == 48

    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "manifest.csv").write_text("path,class\na.png,galaxy\n")
    res = run_cli("data", "check", str(wrong))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "missing column(s) file, label" in res.stderr


def test_frozen_epochs_leave_the_backbone_untouched(tiny_dataset, tmp_path):
    import torch

    from astroclassify.models import create_model
    from astroclassify.training.loop import seed_everything as _seed_everything
    from astroclassify.training.train import fit_model
    from astroclassify.training.train import prepare as prepare_data

    cfg = TrainConfig(
        data=(str(tiny_dataset),),
        model="efficientnet_lite0",
        pretrained=False,
        image_size=32,
        epochs=2,
        freeze_epochs=2,
        batch_size=16,
    )
    data = prepare_data(cfg)
    _seed_everything(cfg.seed)
    initial = create_model(cfg.model, num_classes=2).state_dict()
    model, history, _ = fit_model(cfg, data, np.flatnonzero(data.split == "train"), None)
    trained = model.state_dict()
    body = [k for k in initial if not k.startswith("net._fc.")]
    assert all(torch.equal(initial[k], trained[k]) for k in body)  # weights and BN statistics
    assert not torch.equal(initial["net._fc.weight"], trained["net._fc.weight"])
    assert len(history) == 2


def test_plateau_schedule_lowers_the_rate_when_validation_stalls(tiny_dataset, tmp_path):
    cfg = small_cnn_config(
        tiny_dataset,
        tmp_path / "p",
        image_size=32,
        epochs=6,
        lr=1e-5,
        schedule="plateau",
        plateau_patience=1,
        warmup_epochs=0,
    )  # a learning rate too small to improve anything: validation stalls every epoch
    train(cfg)
    lrs = [row["lr"] for row in json.loads((served(tmp_path / "p") / "history.json").read_text())]
    assert lrs[0] == pytest.approx(1e-5) and lrs[-1] < lrs[0] * 0.5 and lrs == sorted(lrs, reverse=True)
    with pytest.raises(ConfigError, match="schedule must be one of"):
        train(dataclasses.replace(cfg, schedule="step"))


class _RunsCode:
    """What a hostile checkpoint.pt holds: unpickling it calls os.system."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


def test_a_checkpoint_that_would_run_code_is_a_one_line_error(tiny_dataset, tmp_path):
    import torch

    out = tmp_path / "shared-run"
    out.mkdir()
    witness = tmp_path / "pwned"
    torch.save({"model": _RunsCode(f"touch {witness}")}, out / "checkpoint.pt")
    res = run_cli("train", "--data", str(tiny_dataset), "--out", str(out), "--model", "small_cnn", "--epochs", "1")
    assert not witness.exists()  # weights-only: the pickled call was refused, not made
    assert res.returncode == 2, res.stderr
    assert "not a checkpoint this version can resume from" in res.stderr and "--fresh" in res.stderr
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_a_recipe_file_is_one_command_and_options_given_win(tiny_dataset, tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        f"data: [{tiny_dataset}]\nmodel: small_cnn\npretrained: false\nimage_size: 32\nepochs: 1\n"
        "batch_size: 16\nframing: object\ntta: rot4\n"
    )
    res = run_cli("train", "--recipe", str(recipe), "--out", str(tmp_path / "m"), "--set", "tta=none", "--quiet")
    assert res.returncode == 0, res.stderr
    config = json.loads((served(tmp_path / "m") / "model.json").read_text())["training"]["config"]
    assert config["framing"] == "object" and config["image_size"] == 32 and config["tta"] == "none"
    recipe.write_text("data: [x]\nepoch: 3\n")
    res = run_cli("train", "--recipe", str(recipe), "--out", str(tmp_path / "n"))
    assert res.returncode == 2 and f"{recipe}: unknown training option 'epoch'" in res.stderr
    res = run_cli("train", "--out", str(tmp_path / "n"))
    assert res.returncode == 2 and "no training data" in res.stderr and not (tmp_path / "n").exists()


def test_balancing_by_dataset_gives_each_look_its_share():
    """Each class of each dataset is a cell drawn about equally often: a small collection is not drowned."""
    from types import SimpleNamespace

    from astroclassify.training.config import HeadSpec
    from astroclassify.training.loop import Part, _epoch_batches

    datasets = ["survey"] * 900 + ["press"] * 60 + ["press"] * 40
    y = np.array([0] * 800 + [1] * 100 + [0] * 60 + [1] * 40)
    samples = [SimpleNamespace(dataset=d) for d in datasets]
    data = SimpleNamespace(y=y, labels=["elliptical", "spiral"], table=SimpleNamespace(samples=samples))
    rows = np.arange(len(y))
    cfg = TrainConfig(batch_size=1000, seed=0)
    drawn = {}
    for by in ("label", "dataset"):
        head = HeadSpec("h", classes=("x",), balance_by=by, per_epoch=4000)
        part = Part(head, "classes", data, rows, rows[:0])  # type: ignore[arg-type]
        order = np.concatenate([b for _, b in _epoch_batches(cfg, [part], np.random.default_rng(0))])
        drawn[by] = sum(datasets[i] == "press" for i in order) / len(order)
    assert 0.15 < drawn["label"] < 0.35  # classes balanced: press is what its share of each class gives
    assert 0.45 < drawn["dataset"] < 0.55  # each (dataset, class) cell a quarter: press half
    with pytest.raises(ConfigError, match="balance_by must be label or dataset"):
        HeadSpec("h", classes=("x",), balance_by="look")


def test_the_time_budget_holds_between_steps_and_a_paused_run_goes_on_from_its_step(tiny_dataset, tmp_path, caplog):
    """A budget checked only at epoch ends overran by most of an epoch (a 5-minute turn took 375 s)."""
    import time

    from astroclassify.training.loop import TrainingPaused, load_checkpoint

    out = tmp_path / "m"
    budget = 3.0  # seconds; an epoch of 400 draws takes longer
    cfg = small_cnn_config(tiny_dataset, out, image_size=96, epochs=3, batch_size=8, per_epoch=400)
    cfg = dataclasses.replace(cfg, max_minutes=budget / 60)
    started = time.monotonic()
    with pytest.raises(TrainingPaused, match=r"in epoch 1 of 3, after step \d+") as paused:
        train(cfg)
    elapsed = time.monotonic() - started  # decoding included: the budget counts from train()'s start
    assert elapsed < 1.1 * budget, elapsed  # within 10%, not an epoch late
    ck = load_checkpoint(out / "checkpoint.pt")
    assert ck["step"] == paused.value.step > 0 and ck["epoch"] == -1
    # Another epoch count resumes the same run, from its step (it used to start afresh).
    with caplog.at_level("INFO", logger="astroclassify.training.loop"):
        result = train(dataclasses.replace(cfg, max_minutes=0.0, epochs=1))
    assert f"at epoch 1, step {paused.value.step + 1}" in caplog.text
    assert [row["epoch"] for row in json.loads((result.path / "history.json").read_text())] == [1]
