"""The bundled `morphology` model (Galaxy Zoo 1 classes), used as a user would."""

import json

import numpy as np
import pytest
from PIL import Image

import astroclassify
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def clf():
    return astroclassify.load("morphology")


def test_classes_taxonomy_and_card(clf):
    assert clf.classes_ == ("dont_know", "edge_on", "elliptical", "merger", "spiral_acw", "spiral_cw")
    meta = clf.bundle_.meta
    assert meta["taxonomy"]["name"] == "gz1-6class" and meta["crop"] == 0.4
    test = meta["metrics"]["test"]["all"]
    assert test["n"] > 1000 and test["accuracy"] > 0.85  # the shipped file is the trained one
    card = (clf.bundle_.path / "MODEL_CARD.md").read_text()
    assert "gz1-sdss" in card and "spiral_acw ↔ spiral_cw" in card and "### Tags" in card
    dso = astroclassify.load("dso").bundle_.meta
    # Each bundled model took the recipe that measured best on validation: its own encoder (issue 30 §3).
    assert "encoder" not in dso and list(meta["encoder"]["heads"]) == ["morphology"]
    assert "## Recipe (chosen on validation)" in card and "Shared encoder" not in card


def test_tags_rank_ring_galaxies_above_others(clf, shared_data):
    """The ring tag, on DECaLS test images the model never trained on (its tag_splits.csv)."""
    from sklearn.metrics import roc_auc_score

    from astroclassify.preparation.splits import read_splits

    assert clf.predictor.tag_names == ("featured_or_disk", "no_spiral_arms", "not_edge_on", "ring")
    test = [r for r in read_splits(clf.bundle_.path / "tag_splits.csv") if r.split == "test"]
    preds = clf.predict([shared_data / r.key for r in test])
    assert all(set(p.tags) == set(clf.predictor.tag_names) for p in preds)
    ring = [float(r.label == "ring") for r in test]
    assert roc_auc_score(ring, [p.tags["ring"] for p in preds]) > 0.65


def test_mirror_image_of_a_spiral_swaps_its_winding(clf, shared_data):
    rows = [r.split(",") for r in (shared_data / "gz1-sdss/manifest.csv").read_text().splitlines()[1:]]
    spirals = [shared_data / "gz1-sdss" / f for f, label, *_ in rows if label == "spiral_cw"][:5]
    images = [np.asarray(Image.open(p).convert("RGB")) for p in spirals]
    p = clf.predict_proba(images)
    p_mirror = clf.predict_proba([np.ascontiguousarray(im[:, ::-1]) for im in images])
    cw, acw = clf.classes_.index("spiral_cw"), clf.classes_.index("spiral_acw")
    assert np.allclose(p_mirror[:, cw], p[:, acw], atol=1e-4) and np.allclose(p_mirror[:, acw], p[:, cw], atol=1e-4)


def test_predict_and_explain_from_the_cli(shared_data, tmp_path):
    image = next((shared_data / "gz1-sdss/images").iterdir())
    res = run_cli("predict", "--model", "morphology", "--json", str(image))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["label"] in (
        "dont_know",
        "edge_on",
        "elliptical",
        "merger",
        "spiral_acw",
        "spiral_cw",
    )
    out = tmp_path / "why.png"
    res = run_cli("explain", "--model", "morphology", str(image), "--out", str(out))
    assert res.returncode == 0 and "saw the central 40% of the picture (outlined)" in res.stdout
    with Image.open(out) as overlay, Image.open(image) as src:
        # The whole cutout, the central 40% it saw (127..296 of 423 px) outlined in white, the rest dimmed.
        assert overlay.size == src.size == (423, 423)
        drawn, original = np.asarray(overlay, dtype=float), np.asarray(src.convert("RGB"), dtype=float)
    assert (drawn[127, 140:280] == 255).all() and (drawn[140:280, 295] == 255).all()
    outside = np.ones((423, 423), bool)
    outside[120:303, 120:303] = False
    assert np.allclose(drawn[outside], 0.4 * original[outside], atol=1.0)
