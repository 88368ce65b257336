"""One encoder, many heads (training/multitask.py): heads share weights, tags reach every output."""

import json

import numpy as np
import pytest

from astroclassify.modelfolder.folder import resolve_bundle
from tests.conftest import make_sky, run_cli, write_image


@pytest.fixture(scope="module")
def tag_dataset(tmp_path_factory):
    """Synthetic images with a ring/not_ring label and a vote fraction, one cell left empty."""
    root = tmp_path_factory.mktemp("tagged")
    lines = ["file,label,release,round_fraction"]
    for i in range(40):
        ring = i % 2 == 0
        write_image(root / f"img{i:03d}.png", make_sky("galaxy" if ring else "nebula", 64, seed=100 + i))
        fraction = "" if i == 3 else f"{0.8 if ring else 0.2:.2f}"  # no answer: masked, not read as 0
        lines.append(f"img{i:03d}.png,{'ring' if ring else 'not_ring'},t{i // 2:03d},{fraction}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def encoder(tiny_dataset, tag_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("encoder")
    recipe = out / "recipe.yaml"
    recipe.write_text(
        f"""
model: small_cnn
epochs: 3
batch_size: 8
lr: 0.003
patience: 10
heads:
  sky:
    classes: [{tiny_dataset}]
    image_size: 48
  shapes:
    classes: [{tiny_dataset}]
    tags: [{tag_dataset}]
    image_size: 48
    crop: 0.9
    per_epoch: 60  # more than its training images: classes drawn with replacement, tags each once
"""
    )
    # A module fixture runs before the per-test settings fixture: say "no tcmalloc restart" here.
    no_restart = {"ASTROCLASSIFY_TCMALLOC": "false", "ASTROCLASSIFY_HOME": str(out / "home")}
    result = run_cli("train-encoder", str(recipe), "--out", str(out / "run"), "--quiet", env=no_restart)
    assert result.returncode == 0, result.stderr
    assert "sky: test accuracy" in result.stdout and "shapes: test accuracy" in result.stdout
    return out / "run"


def test_heads_share_one_encoder_and_only_the_tagged_head_has_tags(encoder):
    sky, shapes = (json.loads((resolve_bundle(encoder / h) / "model.json").read_text()) for h in ("sky", "shapes"))
    assert sky["encoder"]["id"] == shapes["encoder"]["id"]
    assert sky["crop"] == 1.0 and shapes["crop"] == 0.9  # each head keeps its own preprocessing
    assert "tags" not in sky and shapes["tags"] == ["ring", "round"]
    test = shapes["tag_metrics"]["test"]
    assert 0.0 <= test["round"]["mae"] <= 1.0 and len(test["round"]["ci"]["mae"]) == 2
    assert 0.0 <= test["ring"]["auroc"] <= 1.0 and 0.0 <= test["ring"]["ece"] <= 1.0  # calibration per tag
    assert "ece" not in test["round"]  # a fraction has an error, not a calibration
    assert set(shapes["tag_temperatures"]) == {"ring", "round"} and all(
        t > 0 for t in shapes["tag_temperatures"].values()
    )
    assert 0.0 <= test["ring"]["ece_uncalibrated"] <= 1.0  # before temperature scaling, for comparison
    history = json.loads((resolve_bundle(encoder / "shapes") / "history.json").read_text())
    assert all(np.isfinite(row["loss_shapes:tags"]) for row in history)  # the empty cell was masked
    card = (resolve_bundle(encoder / "shapes") / "MODEL_CARD.md").read_text()
    assert "Shared encoder" in card and "round" in card and "before temperature scaling" in card


def test_predictions_carry_tags_everywhere(encoder, tiny_dataset):
    import astroclassify

    image = next(tiny_dataset.rglob("*.png"))
    shapes = astroclassify.load(encoder / "shapes")
    pred = shapes.predict(image)[0]
    assert set(pred.tags) == {"ring", "round"} and all(0.0 <= v <= 1.0 for v in pred.tags.values())
    assert pred.to_dict()["tags"] == {k: round(v, 6) for k, v in pred.tags.items()}
    assert astroclassify.load(encoder / "sky").predict(image)[0].tags == {}

    shown = run_cli("predict", str(image), "--model", str(encoder / "shapes"), "--json")
    assert set(json.loads(shown.stdout)["tags"]) == {"ring", "round"}
    table = run_cli("predict", str(image), "--model", str(encoder / "shapes"))
    assert "tags" in table.stdout and "round 0." in table.stdout


def test_a_recipe_with_unknown_keys_is_refused(tmp_path):
    from astroclassify.errors import ConfigError
    from astroclassify.training.multitask import load_encoder_recipe

    (tmp_path / "r.yaml").write_text("heads:\n  dso:\n    classes: [hubble-dso]\n    size: 224\n")
    with pytest.raises(ConfigError, match="unknown keys \\['size'\\]"):
        load_encoder_recipe(tmp_path / "r.yaml")
    (tmp_path / "r.yaml").write_text("heads:\n  dso:\n    tags: [gz-decals-rings]\n")
    with pytest.raises(ConfigError, match="needs at least one dataset under `classes`"):
        load_encoder_recipe(tmp_path / "r.yaml")


def test_batch_parquet_and_the_api_carry_tags(encoder, tiny_dataset, tmp_path):
    import pyarrow.parquet as pq
    from fastapi.testclient import TestClient

    from astroclassify.batching.batch import batch
    from astroclassify.config import Settings
    from astroclassify.web.app import create_app

    images = sorted(tiny_dataset.rglob("*.png"))[:4]
    batch([str(p) for p in images], tmp_path / "out", model=encoder / "shapes", workers=1, partition_size=4)
    table = pq.read_table(tmp_path / "out").to_pylist()
    assert len(table) == 4 and all(dict(r["tags"]).keys() == {"ring", "round"} for r in table)

    from tests.web.conftest import LOCAL

    settings = Settings(home=tmp_path / "home", default_model=str(encoder / "shapes"), allowed_hosts=["testserver"])
    with TestClient(create_app(settings), client=LOCAL) as client:
        reply = client.post("/api/classify", files={"image": ("a.png", images[0].read_bytes(), "image/png")})
        assert reply.status_code == 200, reply.text
        assert set(reply.json()["tags"]) == {"ring", "round"}
        page = client.get(f"/classifications/{reply.json()['id']}")
        assert 'id="tags"' in page.text and "round" in page.text
