"""Grad-CAM from the bundled model's ONNX graph: maps land on the object, in every TTA mode."""

import io

import numpy as np
import pytest
from PIL import Image

import astroclassify
from astroclassify.errors import ModelError, UnknownNameError
from astroclassify.imaging.tta import tta_views, undo_tta_view
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def clf():
    return astroclassify.load("dso")


def test_undo_tta_view_restores_every_view():
    img = np.arange(5 * 5 * 3).reshape(1, 5, 5, 3)
    views = tta_views(img, "rot4flip")[:, 0]
    for v, view in enumerate(views):
        assert np.array_equal(undo_tta_view(view, v), img[0])


def _object_on_one_side(shared_data, name: str, left: bool) -> bytes:
    """A 900x450 black canvas with a 300 px object in its left or right third."""
    obj = Image.open(shared_data / "hubble-dso" / name).convert("RGB")
    obj.thumbnail((300, 300))
    canvas = Image.new("RGB", (900, 450))
    canvas.paste(obj, (0 if left else 600, 75))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("tta", ["none", "rot4", "rot4flip"])
@pytest.mark.parametrize("name", ["nebula/opo9811h.jpg", "nebula/heic0308a.jpg"])
@pytest.mark.parametrize("left", [True, False])
def test_heat_falls_on_the_object_in_every_tta_mode(clf, shared_data, name, left, tta):
    explanation = clf.explain(_object_on_one_side(shared_data, name, left), tta=tta)
    heat = explanation.heatmap
    assert heat.shape == (7, 7) and heat.max() == pytest.approx(1.0) and heat.min() >= 0
    near, far = (heat[:, :3].sum(), heat[:, 4:].sum()) if left else (heat[:, 4:].sum(), heat[:, :3].sum())
    assert near > 2 * far


@pytest.mark.parametrize(("width", "height"), [(900, 450), (300, 600)])
def test_overlay_puts_model_frame_heat_on_the_right_image_pixels(width, height):
    from astroclassify.imaging.transforms import letterbox_box
    from astroclassify.inference.overlay import render_overlay

    size = 224
    left, top, nw, nh = letterbox_box(width, height, size)
    heat = np.zeros((size, size), dtype=np.float32)
    # Hot where the image's second quarter (in x and y) lands in the letterboxed frame.
    heat[top + nh // 4 : top + nh // 2, left + nw // 4 : left + nw // 2] = 1.0
    image = Image.new("RGB", (width, height), (40, 40, 40))
    overlay = np.asarray(render_overlay(image, heat, size, cmap="gray"), dtype=float)
    base = image.copy()
    base.thumbnail((512, 512))
    assert overlay.shape[:2] == (base.height, base.width)
    drawn = ((overlay - 0.5 * np.asarray(base, dtype=float)) / 0.5).mean(axis=2)
    rows, cols = np.indices(drawn.shape)
    centre = (drawn * cols).sum() / drawn.sum() / drawn.shape[1], (drawn * rows).sum() / drawn.sum() / drawn.shape[0]
    assert centre == pytest.approx((0.375, 0.375), abs=0.02)


def test_overlay_fills_only_the_box_the_model_saw():
    from astroclassify.inference.overlay import render_overlay

    image = Image.new("RGB", (1000, 600), (100, 100, 100))  # drawn at 512 x 307
    heat = np.ones((7, 7), dtype=np.float32)
    overlay = np.asarray(render_overlay(image, heat, 224, box=(500, 300, 800, 600), cmap="gray"), dtype=float)
    assert overlay.shape[:2] == (307, 512)
    assert np.allclose(overlay[50, 50], 40, atol=1)  # outside the box: dimmed to 40%
    assert np.allclose(overlay[230, 330], 0.5 * 100 + 0.5 * 255, atol=2)  # inside: the heat blended in
    assert (overlay[154, 300:400] == 255).all()  # its outline, white, on the box's top edge (300 * 307 / 600)
    whole = np.asarray(render_overlay(image, heat, 224, box=(0, 0, 1000, 600), cmap="gray"), dtype=float)
    assert np.allclose(whole, 0.5 * 100 + 0.5 * 255, atol=2)  # the whole picture: no box, nothing dimmed


def test_a_framed_box_is_in_the_pictures_own_pixels():
    from astroclassify.imaging.framing import NO_FRAMING, Framing, framed

    image = Image.new("RGB", (400, 200), (10, 10, 10))
    seen, frame = framed(image, NO_FRAMING, crop=0.5)
    assert seen.size == (200, 100) and frame.box == (100, 50, 300, 150) and not frame.found
    assert frame.note == "the central 50% of the picture"
    seen, frame = framed(image, Framing("object"), crop=0.5)  # a blank sky: no object, the crop kept
    assert frame.box == (100, 50, 300, 150) and frame.note.startswith("the central 50% of the picture; no ")
    seen, frame = framed(image, NO_FRAMING)
    assert seen is image and frame.box == (0, 0, 400, 200)


def test_explain_another_class_and_bad_labels(clf, shared_data):
    path = shared_data / "hubble-dso/galaxy/heic0506a.jpg"
    galaxy, nebula = clf.explain(path, "galaxy"), clf.explain(path, "nebula")
    assert (galaxy.label, nebula.label) == ("galaxy", "nebula")
    assert not np.allclose(galaxy.heatmap, nebula.heatmap)
    assert galaxy.seen == "the whole picture" and galaxy.frame.box == (0, 0, *galaxy.image.size)
    assert np.allclose(galaxy.probabilities, clf.predict_proba([path])[0], atol=1e-6)
    with pytest.raises(UnknownNameError, match="unknown label 'comet'"):
        clf.explain(path, "comet")


def test_model_without_cam_output_says_so(tmp_path, shared_data):
    import shutil

    import onnx

    from astroclassify.inference.predictor import OnnxPredictor

    model_dir = tmp_path / "old"
    shutil.copytree(astroclassify.load("dso").bundle_.path, model_dir)
    proto = onnx.load(str(model_dir / "model.onnx"))
    keep = [o for o in proto.graph.output if o.name == "logits"]
    del proto.graph.output[:]
    proto.graph.output.extend(keep)  # a bundle exported before Grad-CAM outputs existed
    onnx.save(proto, str(model_dir / "model.onnx"))
    predictor = OnnxPredictor(model_dir)  # its detector needs the embedding output: left out, with a warning
    assert not predictor.has_cam and predictor.detector is None
    with pytest.raises(ModelError, match="without Grad-CAM maps"):
        predictor.explain(shared_data / "hubble-dso/galaxy/heic0506a.jpg")


def test_explain_command_writes_an_overlay(tmp_path, shared_data):
    out = tmp_path / "deep" / "m.png"
    res = run_cli(
        "explain", str(shared_data / "hubble-dso/nebula/heic0308a.jpg"), "--out", str(out), "--label", "nebula"
    )
    assert res.returncode == 0, res.stderr
    assert "explained nebula" in res.stdout
    with Image.open(out) as img, Image.open(shared_data / "hubble-dso/nebula/heic0308a.jpg") as src:
        assert img.format == "PNG" and img.size == src.size  # under 512 px: drawn at the image's own size
    bad = run_cli("explain", str(tmp_path / "missing.jpg"))
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")
