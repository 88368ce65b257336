"""Training through a taxonomy: labels mapped and stored, mirror flips swap chiral classes."""

import json
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from astroclassify.inference.predictor import OnnxPredictor
from astroclassify.modelfolder.folder import resolve_bundle as served
from astroclassify.training.train import train
from tests.conftest import run_cli, small_cnn_config, write_image


def spiral(clockwise: bool, size: int = 48, seed: int = 0) -> np.ndarray:
    """Two arms winding clockwise or anticlockwise, at a random angle: mirror images of each other."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(img)
    turn, sign = rng.uniform(0, 2 * math.pi), -1 if clockwise else 1
    for arm in (0, math.pi):
        pts = []
        for t in np.linspace(0, 2.6 * math.pi, 60):
            r = 2 + 3.2 * t
            a = turn + arm + sign * t
            pts.append((size / 2 + r * math.cos(a), size / 2 + r * math.sin(a)))
        draw.line(pts, fill=(230, 230, 255), width=2)
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 8, (size, size, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def chiral_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("chiral")
    lines = ["file,label"]
    for i in range(96):
        label = ("cw", "acw", "blob")[i % 3]
        if label == "blob":  # a smooth, round galaxy at a random place
            rng = np.random.default_rng(i)
            yy, xx = np.mgrid[:48, :48] - rng.uniform(18, 30, size=(2, 1, 1))
            glow = 220 * np.exp(-(xx**2 + yy**2) / rng.uniform(20, 60)) + rng.normal(0, 8, (48, 48))
            arr = np.repeat(np.clip(glow, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
        else:
            arr = spiral(label == "cw", seed=i)
        write_image(root / f"{label}/{i:03d}.png", arr)
        lines.append(f"{label}/{i:03d}.png,{label}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    taxonomy = root / "chiral.yaml"
    taxonomy.write_text(
        "name: chiral\nclasses:\n  spiral_cw: [cw]\n  spiral_acw: [acw]\n  smooth: [blob]\n"
        "mirror:\n  spiral_cw: spiral_acw\n  spiral_acw: spiral_cw\n"
    )
    out = tmp_path_factory.mktemp("models") / "chiral"
    cfg = small_cnn_config(root, out, epochs=10, batch_size=16, taxonomy=str(taxonomy), tta="rot4flip", crop=0.9)
    train(cfg)
    return out, root


def test_taxonomy_and_crop_are_stored_with_the_model(chiral_model):
    out, _ = chiral_model
    meta = json.loads((served(out) / "model.json").read_text())
    assert meta["labels"] == ["smooth", "spiral_acw", "spiral_cw"]
    assert meta["taxonomy"]["name"] == "chiral" and meta["taxonomy"]["mirror"]["spiral_cw"] == "spiral_acw"
    assert meta["crop"] == 0.9


def test_mirrored_image_gets_the_mirrored_class_under_flip_tta(chiral_model):
    """With rot4flip views and the mirror map, p(flip(x)) equals p(x) with cw and acw swapped, exactly."""
    out, _ = chiral_model
    predictor = OnnxPredictor(out)
    images = np.stack([spiral(True, seed=500), spiral(False, seed=501)])
    p = predictor.predict_proba(images, "rot4flip")
    p_mirror = predictor.predict_proba(np.ascontiguousarray(images[:, :, ::-1]), "rot4flip")
    swap = [predictor.labels.index(x) for x in ("smooth", "spiral_cw", "spiral_acw")]
    assert np.allclose(p_mirror, p[:, swap], atol=1e-5)


def test_evaluate_maps_dataset_labels_through_the_stored_taxonomy(chiral_model):
    out, root = chiral_model
    res = run_cli("evaluate", "--model", str(out), "--data", str(root), "--json")  # held-out test rows
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout)
    assert (
        m["taxonomy"] == "chiral"
        and m["unknown_labels"] == {}
        and 15 <= m["n"] <= 25
        and m["per_class"]["smooth"]["support"] > 0
    )
    # Both directions right on unseen images: it learned the winding, not only "spiral or not".
    assert m["per_class"]["spiral_cw"]["f1"] >= 0.8 and m["per_class"]["spiral_acw"]["f1"] >= 0.8


def test_files_and_arrays_are_cropped_alike(chiral_model):
    out, root = chiral_model
    predictor = OnnxPredictor(out)
    path = sorted((root / "cw").iterdir())[0]
    arr = np.asarray(Image.open(path).convert("RGB"))
    assert np.array_equal(predictor.prepare(path), predictor.prepare(arr))
    # The crop is applied: a 90% crop of the 48 px image, letterboxed back to 48 px, is not the original.
    assert not np.array_equal(predictor.prepare(arr), arr)


def test_coarser_taxonomy_sums_the_model_probabilities(chiral_model, tmp_path):
    out, root = chiral_model
    coarse = tmp_path / "coarse.yaml"
    coarse.write_text("classes:\n  spiral: [cw, acw, spiral_cw, spiral_acw]\n  smooth: [blob, smooth]\n")
    fine = json.loads(run_cli("evaluate", "--model", str(out), "--data", str(root), "--json").stdout)
    res = run_cli("evaluate", "--model", str(out), "--data", str(root), "--taxonomy", str(coarse), "--json")
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout)
    assert m["collapsed_from"] == ["smooth", "spiral_acw", "spiral_cw"]
    assert m["confusion_matrix"]["labels"] == ["smooth", "spiral"] and m["n"] == fine["n"]
    assert m["accuracy"] >= fine["accuracy"]  # merging cw and acw can only remove errors
