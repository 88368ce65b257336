"""A model's FITS stretch and image filters are stored with it and redone, pixel for pixel, at inference."""

import json

import numpy as np

from astroclassify.modelfolder.folder import resolve_bundle as served
from tests.conftest import make_sky, small_cnn_config


def _fits_dataset(root):
    """24 survey-like FITS cutouts: flux (float32, big-endian on disk) with NaN blanks and a sky gradient."""
    from astropy.io import fits

    lines = ["file,label,release"]
    for i in range(24):
        kind = "galaxy" if i % 2 == 0 else "nebula"
        flux = make_sky(kind, 64, seed=i).mean(axis=-1).astype(np.float32) ** 2 / 100.0
        flux += np.linspace(0, 30, 64, dtype=np.float32)[None, :]  # scattered light
        flux[:3, :3] = np.nan
        rel = f"{kind}/cut{i:03d}.fits"
        (root / kind).mkdir(parents=True, exist_ok=True)
        fits.PrimaryHDU(flux).writeto(root / rel)
        lines.append(f"{rel},{kind},r{i // 2:03d}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


def test_stretch_and_filters_are_stored_and_applied_identically_at_inference(tmp_path):
    from astroclassify.imaging.stretch import FitsDisplay
    from astroclassify.inference.predictor import OnnxPredictor
    from astroclassify.preparation.dataset import load_dataset
    from astroclassify.preparation.prepare import build_table
    from astroclassify.training.train import train

    data = _fits_dataset(tmp_path / "cutouts")
    out = tmp_path / "model"
    cfg = small_cnn_config(data, out, epochs=2, folds=2, fits_stretch="sqrt", fits_interval="zscale")
    cfg = type(cfg)(**{**cfg.__dict__, "filters": "background,clahe"})
    train(cfg)
    meta = json.loads((served(out) / "model.json").read_text())
    assert meta["fits"] == {"stretch": "sqrt", "interval": "zscale", "percentiles": [0.5, 99.7], "upper_level": 0.5}
    assert meta["filters"] == ["background", "clahe"]

    samples = load_dataset(data).samples[:4]
    trained_on = build_table(
        samples, 48, fits_display=FitsDisplay("sqrt", "zscale"), filters=("background", "clahe")
    ).pixels
    predictor = OnnxPredictor(out)
    seen = np.stack([predictor.prepare(s.path) for s in samples])
    assert np.array_equal(seen, trained_on)  # the same pixels, not merely similar ones
    plain = build_table(samples, 48).pixels
    assert np.abs(plain.astype(int) - seen).mean() > 5  # and the stretch and filters did change them
    import astroclassify

    results = astroclassify.load(out).predict([s.path for s in samples])  # FITS in, as any user would
    assert [r.label for r in results] and {r.label for r in results} <= {"galaxy", "nebula"}
