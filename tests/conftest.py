"""Shared fixtures: real shared data, tiny generated images and datasets, isolated settings."""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.clirun import run_in_process

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch, tmp_path_factory):
    """No test sees the developer's ASTROCLASSIFY_* variables or ~/.astroclassify."""
    for key in list(os.environ):
        if key.startswith("ASTROCLASSIFY_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("ASTROCLASSIFY_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.setenv("ASTROCLASSIFY_TCMALLOC", "false")


NO_SHARED_DATA = "../shared/data not present"


def pytest_terminal_summary(terminalreporter) -> None:
    """Say once why tests were skipped for want of the shared datasets (CI fails instead)."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if NO_SHARED_DATA in str(r.longrepr)]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} tests skipped: {NO_SHARED_DATA} at {SHARED_DATA} (README, Datasets: put the "
            "shared folder beside the checkout to run them)",
            yellow=True,
        )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED_DATA} is missing: CI must run with ../shared beside the checkout")
        pytest.skip(NO_SHARED_DATA)
    return SHARED_DATA


def make_sky(kind: str, size: int = 64, seed: int = 0) -> np.ndarray:
    """A synthetic 'galaxy' (bright blob) or 'nebula' (diffuse streaks) on black sky."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), (0, 0, 0))
    draw = ImageDraw.Draw(img)
    cx, cy = rng.integers(size // 3, 2 * size // 3, 2)
    if kind == "galaxy":
        r = int(rng.integers(size // 8, size // 4))
        draw.ellipse([cx - r, cy - r // 2, cx + r, cy + r // 2], fill=(255, 240, 200))
    else:
        for _ in range(6):
            x0, y0, x1, y1 = rng.integers(0, size, 4)
            draw.line([x0, y0, x1, y1], fill=(200, 60, 120), width=int(rng.integers(2, 5)))
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 6, (size, size, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def write_image(path: Path, arr: np.ndarray, fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)
    return path


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """48 synthetic images, two classes, with a manifest: trains in seconds."""
    root = tmp_path_factory.mktemp("tiny")
    lines = ["file,label,release"]
    for i in range(48):
        kind = "galaxy" if i % 2 == 0 else "nebula"
        rel = f"{kind}/img{i:03d}.png"
        write_image(root / rel, make_sky(kind, 64, seed=i))
        lines.append(f"{rel},{kind},r{i // 2:03d}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


def small_cnn_config(data: Path, out: Path, **overrides):
    """A from-scratch small_cnn TrainConfig that trains on the tiny datasets in seconds."""
    from astroclassify.training.config import TrainConfig

    base = dict(model="small_cnn", pretrained=False, image_size=48, epochs=4, batch_size=8, lr=3e-3, patience=20)
    return TrainConfig(data=(str(data),), out=str(out), **(base | overrides))


def distinct(data: bytes, tag: object) -> bytes:
    """The same JPEG with a tag after its end marker: decodes to the same pixels, but is another file.

    The server answers a repeated upload (same bytes, model and TTA) with its first record;
    tests that need a fresh record per upload send distinct files.
    """
    return data + f"astroclassify-test-{tag}".encode()


def fits_cube_bytes(rgb: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 picture as a BITPIX-8 3-plane FITS cube, rows bottom-up as FITS stores them."""
    from astropy.io import fits

    buf = io.BytesIO()
    fits.PrimaryHDU(np.ascontiguousarray(np.moveaxis(rgb, -1, 0)[:, ::-1])).writeto(buf)
    return buf.getvalue()


def jpeg_bytes(arr: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def run_cli(
    *args: str, env: dict | None = None, timeout: float = 600, process: bool = False
) -> subprocess.CompletedProcess:
    """Run ``astroclassify ARGS``: its ``main`` in this process, or (``process=True``) the installed console
    script in a new one, the way a user's shell does."""
    if not process:
        return run_in_process(list(args), env)
    full_env = {**os.environ, **(env or {})}
    exe = Path(sys.executable).with_name("astroclassify")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=full_env, timeout=timeout)


# --- archives: a local stand-in for APOD and ESA/Hubble (sources, pipeline and web tests) ---

ESA_GALAXIES = ["heic2401a", "potw2402a", "heic2403a", "potw2404a", "heic2405a"]
ESA_NEBULAE = ["heic2411a", "potw2412a"]


@pytest.fixture
def site(shared_data):
    s = _archive_site()(shared_data / "apod")
    s.add_esa_category("galaxies", ESA_GALAXIES)
    s.add_esa_category("nebulae", ESA_NEBULAE)
    s.url = s.start()
    yield s
    s.stop()


@pytest.fixture
def cli(tmp_path):
    """Run ``astroclassify`` in a subprocess against an isolated home, with fast retries."""
    home = tmp_path / "home"
    env = dict(
        os.environ,
        ASTROCLASSIFY_HOME=str(home),
        ASTROCLASSIFY_INGEST_MIN_INTERVAL="0",
        ASTROCLASSIFY_INGEST_BACKOFF="0.05",
        ASTROCLASSIFY_INGEST_RETRIES="1",
        ASTROCLASSIFY_INGEST_TIMEOUT="0.75",
    )

    def run(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
        return run_in_process(list(args), {**run.env, **(env or {})})

    run.home = home
    run.env = env
    return run


def day(n: int) -> dt.date:
    return dt.date(2023, 3, 1) + dt.timedelta(days=n)


def _archive_site():
    from tests.ingestion.archive_site import ArchiveSite

    return ArchiveSite
