"""Settings flow in: the app uses the Settings it is given, never the environment again."""

import io
import shutil
import sqlite3
from importlib import resources

from fastapi.testclient import TestClient
from PIL import Image

from astroclassify.config import Settings
from astroclassify.web.app import create_app
from tests.web.conftest import LOCAL, upload


def png(width: int, height: int, noise: bool = True) -> bytes:
    """Noise (about 2.4 bytes a pixel) or a flat grey (a few hundred bytes)."""
    image = Image.effect_noise((width, height), 40) if noise else Image.new("L", (width, height), 40)
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def test_the_app_uses_every_setting_it_is_given(tmp_path, monkeypatch, galaxy):
    home, db = tmp_path / "home", tmp_path / "elsewhere.db"
    mine = home / "models" / "mine"
    shutil.copytree(str(resources.files("astroclassify") / "bundled" / "dso"), mine)
    settings = Settings(
        home=home,
        database_url=f"sqlite:///{db}",
        default_model="morphology",
        max_image_pixels=200_000,
        max_file_bytes=400_000,
        max_upload_bytes=600_000,
        inference_threads=1,
        max_concurrent_decodes=3,
        low_confidence_threshold=1.0,
        serve_tta="none",
        batch_max_files=2,
        allowed_hosts=["testserver"],
    )
    # What the environment says now must not matter: nothing may read it again.
    env_home = tmp_path / "env-home"
    for name, value in {
        "HOME": str(env_home),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'env.db'}",
        "DEFAULT_MODEL": "dso",
        "MAX_IMAGE_PIXELS": "1",
        "MAX_FILE_BYTES": "1",
        "INFERENCE_THREADS": "2",
        "LOW_CONFIDENCE_THRESHOLD": "0",
        "SERVE_TTA": "rot4flip",
    }.items():
        monkeypatch.setenv(f"ASTROCLASSIFY_{name}", value)

    with TestClient(create_app(settings), client=LOCAL, raise_server_exceptions=False) as client:
        app = client.app
        answer = upload(client, galaxy)  # 500 x 345 px, 120 kB
        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert result["model"] == "morphology"  # default_model
        assert result["tta"] == "none"  # serve_tta
        assert result["low_confidence"] is True  # low_confidence_threshold = 1.0
        assert "mine" in {m["name"] for m in client.get("/api/models").json()}  # models_dir
        assert upload(client, galaxy, data={"model": "mine"}).json()["model"] == "mine"

        too_many_pixels = upload(client, png(500, 420, noise=False), "big.png")  # 210,000 px > max_image_pixels
        assert "0.21 Mpx is over the 0.2 Mpx limit" in too_many_pixels.json()["error"]["message"]
        heavy = png(440, 440)  # 193,600 px: under the pixel limit
        assert 400_000 < len(heavy) < 600_000  # over max_file_bytes, under max_upload_bytes
        too_big_to_decode = upload(client, heavy, "heavy.png")
        assert "is over the 391 KiB limit" in too_big_to_decode.json()["error"]["message"]
        too_big = upload(client, png(600, 600), "huge.png")  # > max_upload_bytes
        assert too_big.status_code == 413 and "586 KiB" in too_big.text

        files = [("images", (f"{i}.jpg", galaxy + bytes([i]), "image/jpeg")) for i in range(3)]
        batch = client.post("/api/classify/batch", files=files)
        assert batch.json()["error"]["message"] == "batch has 3 files; the limit is 2 per request"

        predictor = app.state.pool.get("morphology")
        assert predictor.session.get_session_options().intra_op_num_threads == 1  # inference_threads
        assert app.state.decoder.workers == 3  # max_concurrent_decodes

    assert (home / "uploads").is_dir() and not env_home.exists()  # home
    assert not (home / "astroclassify.db").exists()  # database_url
    rows = sqlite3.connect(db).execute("select count(*) from classifications").fetchone()[0]
    assert rows == 2
