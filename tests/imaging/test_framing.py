"""Object framing: the main object found and cropped alike wherever it sits and however big it is."""

import json

import numpy as np
import pytest
from PIL import Image

from astroclassify.imaging.framing import Framing, frame_object, framed


def galaxy(size: int, sigma: float, centre=None, seed: int = 0, sky: float = 20.0) -> Image.Image:
    """A smooth elliptical glow of width ``sigma`` px on a noisy sky."""
    rng = np.random.default_rng(seed)
    cy, cx = centre if centre is not None else (size / 2, size / 2)
    yy, xx = np.mgrid[:size, :size]
    glow = 200 * np.exp(-(((xx - cx) / sigma) ** 2 + ((yy - cy) / (0.6 * sigma)) ** 2) / 2)
    arr = np.clip(sky + glow + rng.normal(0, 4, (size, size)), 0, 255).astype(np.uint8)
    return Image.fromarray(np.repeat(arr[..., None], 3, axis=2))


def test_a_small_central_object_is_cropped_to_a_multiple_of_its_size():
    image = galaxy(400, sigma=12)
    frame = frame_object(image, Framing("object", scale=6.0))
    left, top, right, bottom = frame.box
    assert frame.found and right - left == bottom - top  # a square
    assert 60 <= right - left <= 130  # about 6 x the glow's semi-major axis, far below 400
    assert abs((left + right) / 2 - 200) < 6 and abs((top + bottom) / 2 - 200) < 6


def test_the_same_object_at_two_scales_is_framed_alike():
    """A cutout and a press image of one kind of galaxy: after framing they look alike."""
    small, big = galaxy(400, sigma=10), galaxy(300, sigma=40)
    a, _ = framed(small, Framing("object"))
    b, _ = framed(big, Framing("object"))
    a, b = (np.asarray(x.convert("L").resize((64, 64)), np.float32) for x in (a, b))
    unframed = np.asarray(small.convert("L").resize((64, 64)), np.float32)
    assert np.abs(a - b).mean() < 0.65 * np.abs(unframed - b).mean()  # 0.58 measured


def test_an_object_that_fills_the_frame_keeps_the_whole_picture():
    frame = frame_object(galaxy(300, sigma=80), Framing("object"))
    assert frame.box == (0, 0, 300, 300) and frame.found and "fills the frame" in frame.note


@pytest.mark.parametrize(
    ("image", "note"),
    [
        (Image.fromarray(np.random.default_rng(0).integers(0, 30, (200, 200, 3), dtype=np.uint8)), "no main object"),
        (galaxy(400, sigma=10, centre=(40, 40)), "no main object near the centre"),
    ],
)
def test_no_clear_main_object_keeps_the_whole_frame_and_says_so(image, note):
    frame = frame_object(image, Framing("object"))
    assert frame.box == (0, 0, *image.size) and not frame.found and note in frame.note


def test_a_crop_near_the_edge_stays_inside_the_picture():
    frame = frame_object(galaxy(400, sigma=14, centre=(150, 255)), Framing("object"))
    left, top, right, bottom = frame.box
    assert frame.found and left >= 0 and top >= 0 and right <= 400 and bottom <= 400


def test_framing_off_and_bad_settings():
    assert frame_object(galaxy(100, 5), Framing()).box == (0, 0, 100, 100)
    with pytest.raises(ValueError, match="framing must be one of none, object"):
        Framing("moon")
    assert Framing.from_dict(None) == Framing() and Framing.from_dict(Framing("object", 5).to_dict()).scale == 5


def test_a_framed_model_stores_its_framing_and_frames_files_and_arrays_alike(tmp_path):
    from astroclassify.inference.predictor import OnnxPredictor
    from astroclassify.training.train import train
    from tests.conftest import small_cnn_config, write_image

    root = tmp_path / "data"
    lines = ["file,label"]
    rng = np.random.default_rng(0)
    for i in range(24):
        label = "round" if i % 2 else "flat"
        centre = rng.uniform(60, 100, 2)  # each picture its own: near-duplicates would share a group
        image = galaxy(160, rng.uniform(6, 14), centre=centre, seed=i, sky=rng.uniform(5, 40))
        image = image if label == "round" else image.transpose(Image.Transpose.ROTATE_90)
        write_image(root / f"{label}/{i:02d}.png", np.asarray(image))
        lines.append(f"{label}/{i:02d}.png,{label}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "framed"
    train(small_cnn_config(root, out, epochs=1, framing="object"))
    predictor = OnnxPredictor(out)
    assert json.loads((predictor.bundle.path / "model.json").read_text())["framing"]["method"] == "object"
    path = root / "round/01.png"
    assert np.array_equal(predictor.prepare(path), predictor.prepare(np.asarray(Image.open(path))))
    whole = OnnxPredictor(out)
    whole.framing = Framing()
    assert not np.array_equal(predictor.prepare(path), whole.prepare(path))  # the framing is applied
