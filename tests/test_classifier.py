import numpy as np
import pytest

import astroclassify
from astroclassify.errors import DataError


def test_fit_then_predict_on_paths(tiny_dataset, tmp_path):
    paths = sorted(tiny_dataset.rglob("*.png"))
    labels = [p.parent.name for p in paths]
    clf = astroclassify.Classifier(
        model="small_cnn", pretrained=False, image_size=48, epochs=12, batch_size=8, lr=3e-3, patience=20
    )
    assert not hasattr(clf, "classes_")  # the constructor only stores its arguments
    assert clf.fit(paths, labels, out=tmp_path / "m") is clf
    assert clf.classes_ == ("galaxy", "nebula")
    preds = clf.predict(paths[:4])
    assert [p.source for p in preds] == [str(p) for p in paths[:4]]
    assert all(isinstance(p, astroclassify.Prediction) for p in preds)
    probs = clf.predict_proba(paths)
    assert probs.shape == (48, 2) and np.allclose(probs.sum(1), 1)
    assert (np.array(clf.classes_)[probs.argmax(1)] == np.array(labels)).mean() > 0.8
    again = astroclassify.load(tmp_path / "m")
    assert np.allclose(again.predict_proba(paths[:3]), probs[:3])


def test_fit_rejects_mismatched_lengths():
    with pytest.raises(DataError, match="2 items but y has 1"):
        astroclassify.Classifier().fit(["a.png", "b.png"], ["galaxy"])


def test_one_path_bytes_or_array_is_one_input(shared_data):
    """predict("m51.jpg") iterated over the characters of the path and said "/: is a directory"."""
    from PIL import Image

    clf = astroclassify.load("dso")
    path = shared_data / "hubble-dso/galaxy/heic0506a.jpg"
    expected = clf.predict([path])[0]
    for one in (str(path), path, path.read_bytes(), np.asarray(Image.open(path).convert("RGB"))):
        (pred,) = clf.predict(one, tta="none") if isinstance(one, np.ndarray) else clf.predict(one)
        assert pred.label == expected.label
        assert clf.predict_proba(one, tta="none").shape == (1, len(clf.classes_))
    assert len(clf.predict([path, path])) == 2


def test_reprs_are_short_and_say_what_matters(shared_data):
    """Dataset and CheckReport reprs were about 134 KB each; Explanation printed its heat map."""
    from astroclassify import datasets

    clf = astroclassify.load("dso")
    reprs = {
        "classifier": repr(clf),
        "unfitted": repr(astroclassify.Classifier(epochs=3)),
        "explanation": repr(clf.explain(shared_data / "hubble-dso/galaxy/heic0506a.jpg")),
        "dataset": repr(datasets.load(shared_data / "hubble-dso")),
        "check": repr(datasets.check(shared_data / "hubble-dso", decode=False)),
    }
    assert all(len(r) < 200 for r in reprs.values()), reprs
    assert "'dso'" in reprs["classifier"] and "galaxy" in reprs["classifier"]
    assert "not fitted" in reprs["unfitted"] and "epochs=3" in reprs["unfitted"]
    assert reprs["explanation"].startswith("Explanation(label=")
    assert "371 images" in reprs["dataset"] and "galaxy: 189" in reprs["dataset"]
    assert "ok" in reprs["check"]


def test_predict_iter_streams_a_result_or_an_error_per_input(shared_data, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    good = shared_data / "hubble-dso/galaxy/heic0506a.jpg"
    clf = astroclassify.load("dso")
    results = list(clf.predict_iter([good, bad, good], batch_size=2))
    assert [type(r).__name__ for r in results] == ["Prediction", "FailedPrediction", "Prediction"]
    assert results[1].source == str(bad) and results[1].to_dict()["error"]
    with pytest.raises(astroclassify.ImageDecodeError):
        clf.predict([good, bad])  # predict itself still stops at the first bad input


def test_load_takes_limits_and_the_estimator_clones(shared_data):
    from sklearn.base import clone

    small = astroclassify.load("dso", limits=astroclassify.DecodeLimits(max_pixels=10_000), threads=1)
    with pytest.raises(astroclassify.ImageDecodeError, match="over the 0.01 Mpx limit"):
        small.predict(shared_data / "hubble-dso/galaxy/heic0506a.jpg")
    clf = astroclassify.Classifier(model="small_cnn", taxonomy="gz1-coarse", epochs=3)
    twin = clone(clf)
    assert twin is not clf and twin.get_params() == {"model": "small_cnn", "taxonomy": "gz1-coarse", "epochs": 3}
    assert twin.set_params(epochs=5, taxonomy=None).get_params()["epochs"] == 5 and twin.taxonomy is None


def test_fit_trains_through_the_taxonomy(tiny_dataset, tmp_path, monkeypatch):
    """``Classifier(taxonomy=...)`` was stored and never used."""
    import astroclassify.training.train as training

    seen = {}

    def record(cfg, *args, **kwargs):
        seen["taxonomy"] = cfg.taxonomy
        raise RuntimeError("stop after the config")

    monkeypatch.setattr(training, "train", record)
    paths = sorted(tiny_dataset.rglob("*.png"))[:4]
    with pytest.raises(RuntimeError, match="stop after the config"):
        astroclassify.Classifier(model="small_cnn", taxonomy="seed-hubble4").fit(paths, ["galaxy"] * 4, out=tmp_path)
    assert seen == {"taxonomy": "seed-hubble4"}


def test_an_explanation_shows_itself_in_a_notebook(shared_data):
    html = astroclassify.load("dso").explain(shared_data / "hubble-dso/galaxy/heic0506a.jpg")._repr_html_()
    assert html.startswith('<figure style="margin:0"><img src="data:image/jpeg;base64,')
    assert "Grad-CAM for galaxy" in html and len(html) < 200_000
