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
    path = shared_data / "hubble-dso/galaxy/heic0007b.jpg"
    expected = clf.predict([path])[0]
    for one in (str(path), path, path.read_bytes(), np.asarray(Image.open(path).convert("RGB"))):
        (pred,) = clf.predict(one, tta="none") if isinstance(one, np.ndarray) else clf.predict(one)
        assert pred.label == expected.label
        assert clf.predict_proba(one, tta="none").shape == (1, 3)
    assert len(clf.predict([path, path])) == 2


def test_reprs_are_short_and_say_what_matters(shared_data):
    """Dataset and CheckReport reprs were about 134 KB each; Explanation printed its heat map."""
    from astroclassify import datasets

    clf = astroclassify.load("dso")
    reprs = {
        "classifier": repr(clf),
        "unfitted": repr(astroclassify.Classifier(epochs=3)),
        "explanation": repr(clf.explain(shared_data / "hubble-dso/galaxy/heic0007b.jpg")),
        "dataset": repr(datasets.load(shared_data / "hubble-dso")),
        "check": repr(datasets.check(shared_data / "hubble-dso", decode=False)),
    }
    assert all(len(r) < 200 for r in reprs.values()), reprs
    assert "'dso'" in reprs["classifier"] and "galaxy" in reprs["classifier"]
    assert "not fitted" in reprs["unfitted"] and "epochs=3" in reprs["unfitted"]
    assert reprs["explanation"].startswith("Explanation(label=")
    assert "371 images" in reprs["dataset"] and "galaxy: 189" in reprs["dataset"]
    assert "ok" in reprs["check"]
