"""The bundled galaxy-type model: Hubble types on a press image, a telescope photo and a survey cutout."""

import json

import astroclassify
from astroclassify.modelfolder.folder import load_bundle


def test_it_loads_by_name_with_its_card_detector_and_taxonomy():
    b = load_bundle("galaxy-type")
    assert b.labels == ("elliptical", "irregular", "lenticular", "spiral")
    meta = json.loads((b.path / "model.json").read_text())
    assert meta["taxonomy"]["name"] == "galaxy-type" and meta["training"]["config"]["balance_by"] == "dataset"
    assert (b.path / "detector" / "detector.json").is_file() and (b.path / "MODEL_CARD.md").is_file()
    assert "galaxy-type" in {m.name for m in astroclassify.list_models()}


def test_one_picture_of_each_look_gets_a_type_and_an_explanation(shared_data):
    clf = astroclassify.load("galaxy-type")
    pictures = [
        shared_data / "hubble-galaxy-types/spiral/heic0002a.jpg",  # a press image
        shared_data / "stellarium-dso/galaxy/m101-vasey.jpg",  # a telescope photograph
        next((shared_data / "gz1-sdss/images").iterdir()),  # a survey cutout
    ]
    for p in clf.predict(pictures):
        assert p.label in clf.classes_ and abs(sum(p.probabilities.values()) - 1) < 1e-4
        assert p.anomaly_score is not None
    assert clf.explain(pictures[0]).heatmap.shape[0] > 0
