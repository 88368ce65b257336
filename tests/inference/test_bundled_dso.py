"""The bundled `dso` model, used exactly as a user would after install."""

import json

import numpy as np
import pytest

import astroclassify
from astroclassify.errors import ImageDecodeError, NotFittedError, UnknownNameError
from tests.conftest import jpeg_bytes, make_sky, run_cli


@pytest.fixture(scope="module")
def clf():
    return astroclassify.load("dso")


def test_load_and_predict_typed_results(clf, shared_data):
    assert clf.classes_ == ("galaxy", "nebula", "planet", "star_cluster")
    files = [
        shared_data / "hubble-dso/galaxy/heic0506a.jpg",
        shared_data / "hubble-dso/nebula" / sorted(p.name for p in (shared_data / "hubble-dso/nebula").iterdir())[0],
    ]
    preds = clf.predict(files)
    assert len(preds) == 2
    for p in preds:
        assert isinstance(p, astroclassify.Prediction)
        assert p.label in clf.classes_
        assert p.confidence == max(p.probabilities.values())
        assert abs(sum(p.probabilities.values()) - 1) < 1e-6
    probs = clf.predict_proba(files)
    assert probs.shape == (2, 4)
    assert np.allclose(probs.max(axis=1), [p.confidence for p in preds])


def test_arrays_and_bytes_give_the_same_answer_as_files(clf, shared_data):
    from PIL import Image

    path = shared_data / "hubble-dso/galaxy/heic0506a.jpg"
    arr = np.asarray(Image.open(path).convert("RGB"))
    by_path = clf.predict_proba([path])[0]
    by_bytes = clf.predict_proba([path.read_bytes()])[0]
    by_array = clf.predict_proba([arr])[0]
    assert np.allclose(by_path, by_bytes)
    assert np.abs(by_path - by_array).max() < 0.05  # arrays skip JPEG DCT draft scaling


def test_bad_inputs_raise_clear_errors(clf):
    with pytest.raises(ImageDecodeError, match="truncated|corrupt"):
        clf.predict([jpeg_bytes(make_sky("galaxy", 300))[:500]])
    with pytest.raises(NotFittedError):
        astroclassify.Classifier().predict(["x.jpg"])
    with pytest.raises(UnknownNameError, match="dso"):
        astroclassify.load("dsoo")


def test_predict_cli_with_default_model(shared_data, tmp_path):
    good = shared_data / "nasa-planets-galaxies/planet"
    first = sorted(good.iterdir())[:3]
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    res = run_cli("predict", *map(str, first), str(empty), "--json")
    assert res.returncode == 1
    rows = [json.loads(x) for x in res.stdout.splitlines()]
    assert [r["file"] for r in rows[:3]] == list(map(str, first))
    assert rows[3] == {"file": str(empty), "error": "file is empty"}
    assert "Traceback" not in res.stderr
    table = run_cli("predict", str(first[0]))
    assert table.returncode == 0 and "planet" in table.stdout


def test_unknown_model_is_one_line(tmp_path):
    res = run_cli("predict", str(tmp_path), "--model", "nosuchmodel")
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: unknown model 'nosuchmodel'")
    assert len(res.stderr.strip().splitlines()) == 1


def test_bundled_model_card_and_metrics_are_reproducible(shared_data):
    """`evaluate --json` on hubble-dso reproduces the figures in the shipped model.json."""
    bundle_dir = astroclassify.load("dso").bundle_.path
    meta = json.loads((bundle_dir / "model.json").read_text())
    card = (bundle_dir / "MODEL_CARD.md").read_text()
    assert "astroclassify train --recipe recipes/dso.yaml" in card and "## Recipe (chosen on validation)" in card
    res = run_cli("evaluate", "--model", "dso", "--data", "hubble-dso", "--json")
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout)
    stored = meta["metrics"]["test"]["hubble-dso"]
    assert m["n"] == stored["n"] and m["accuracy"] == stored["accuracy"] and m["macro_f1"] == stored["macro_f1"]
    assert m["unknown_labels"] == {} and m["failed"] == []
    # Every figure has its 95% interval, in the JSON and on the card.
    assert (
        m["ci"]["accuracy"] == stored["ci"]["accuracy"]
        and m["ci"]["accuracy"][0] < m["accuracy"] < m["ci"]["accuracy"][1]
    )
    assert set(m["ci"]) >= {"accuracy", "macro_f1", "ece"} and m["per_class"]["nebula"]["f1_ci"]
    lo, hi = stored["ci"]["accuracy"]
    assert f"| hubble-dso | 75 | {stored['accuracy']:.3f} [{lo:.2f}, {hi:.2f}] |" in card


def test_evaluate_report_never_writes_into_the_package(shared_data, tmp_path):
    bundle_dir = astroclassify.load("dso").bundle_.path
    before = {p.name: p.stat().st_mtime for p in bundle_dir.iterdir()}
    home = tmp_path / "home"
    res = run_cli("evaluate", "--model", "dso", "--data", "hubble-dso", env={"ASTROCLASSIFY_HOME": str(home)})
    assert res.returncode == 0, res.stderr
    assert "accuracy" in res.stdout and "galaxy" in res.stdout
    reports = home / "reports" / "dso"
    report = (reports / "report-hubble-dso-auto.html").read_text()  # one file name per dataset and split
    assert (reports / "report-hubble-dso-auto-confusion_matrix.png").is_file()
    assert "<details><summary>Raw metrics (JSON)</summary>" in report
    assert (
        report.count('<td class="thumb"><img src="data:image/jpeg;base64,') == report.count('<td class="thumb">') >= 1
    )
    other = run_cli(
        "evaluate", "--model", "dso", "--data", "nasa-planets-galaxies", env={"ASTROCLASSIFY_HOME": str(home)}
    )
    assert other.returncode == 0, other.stderr
    assert (reports / "report-nasa-planets-galaxies-auto.html").is_file()
    assert (reports / "report-hubble-dso-auto.html").read_text() == report  # not overwritten
    assert {p.name: p.stat().st_mtime for p in bundle_dir.iterdir()} == before


def test_run_keeps_input_order_across_batches_with_bad_inputs_among_them(shared_data):
    """Decoding runs a batch ahead on another thread: answers still come back in input order."""
    from astroclassify.inference.predictor import OnnxPredictor

    predictor = OnnxPredictor("dso")
    good = sorted((shared_data / "hubble-dso/galaxy").glob("*.jpg"))[:7]
    inputs = [good[0], b"not an image", *good[1:4], b"\xff\xd8\xff truncated", *good[4:]]
    outcomes = list(predictor.run(inputs, batch_size=3, tta="none"))
    assert [o.source for o in outcomes] == [str(p) if not isinstance(p, bytes) else "<bytes>" for p in inputs]
    assert [o.error is not None for o in outcomes] == [isinstance(p, bytes) for p in inputs]
    one_by_one = [next(predictor.run([p], tta="none")).probabilities for p in good]
    together = [o.probabilities for o in outcomes if o.error is None]
    assert np.allclose(np.stack(together), np.stack(one_by_one), atol=1e-5)
    assert list(predictor.run([], tta="none")) == []


def test_a_model_json_with_an_unknown_filter_or_stretch_is_a_model_error(tmp_path):
    import shutil

    from astroclassify.errors import ModelError
    from astroclassify.inference.predictor import OnnxPredictor
    from astroclassify.modelfolder.folder import load_bundle

    folder = tmp_path / "edited"
    shutil.copytree(load_bundle("dso").path, folder)
    meta = json.loads((folder / "model.json").read_text())
    for change, message in (
        ({"filters": ["sharpen"]}, "unknown image filter"),
        ({"fits": {"stretch": "gamma"}}, "stretch 'gamma'"),
    ):
        (folder / "model.json").write_text(json.dumps(meta | change))
        with pytest.raises(ModelError, match=message):
            OnnxPredictor(folder)
