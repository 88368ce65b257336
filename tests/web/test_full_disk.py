"""A full disk under ASTROCLASSIFY_HOME: 507 JSON that says so, never a reset, nothing half-written."""

import os
import shutil
import subprocess
import uuid

import pytest
from fastapi.testclient import TestClient

from astroclassify.config import Settings
from astroclassify.web.app import create_app
from tests.conftest import distinct
from tests.web.conftest import LOCAL, upload


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MiB tmpfs: a real file system that fills up (needs root, as CI has)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs in CI: {done.stderr.decode().strip()}")
        pytest.skip("mounting a small tmpfs needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder) -> None:
    """Take every free byte of the file system ``folder`` is on."""
    with open(folder / "ballast", "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    while shutil.disk_usage(folder).free > 0:  # the last partial block
        try:
            (folder / f"crumb-{uuid.uuid4().hex}").write_bytes(b"\0" * 512)
        except OSError:
            break


def test_a_full_disk_answers_507_and_keeps_what_was_stored(small_disk, galaxy):
    settings = Settings(home=small_disk / "home", allowed_hosts=["testserver"])
    with TestClient(create_app(settings), client=LOCAL) as client:  # raises if anything escapes the app
        first = upload(client, galaxy)
        assert first.status_code == 200, first.text
        _fill(small_disk)
        answers = [upload(client, distinct(galaxy, i)) for i in range(12)]
        assert {a.status_code for a in answers} == {507}, [a.text for a in answers]
        body = answers[0].json()["error"]
        assert body["type"] == "StoreFullError" and "store is full" in body["message"]
        assert not list((small_disk / "home" / "uploads").glob(".tmp-*"))  # nothing half-written
        assert len(list((small_disk / "home" / "uploads").iterdir())) == 1  # the first upload, whole
        # The earlier record and its image are still served; the connection answers on.
        assert client.get(f"/api/classifications/{first.json()['id']}").status_code == 200
        assert client.get(f"/api/classifications/{first.json()['id']}/image").status_code == 200
        assert client.get("/health").status_code == 200
        (small_disk / "ballast").unlink()
        again = upload(client, distinct(galaxy, "after"))
        assert again.status_code == 200, again.text  # space freed: uploads work again


def test_a_full_disk_stops_a_sync_with_the_store_full_message(small_disk):
    """A sync into a full disk says the store is full (SQLite calls it a disk I/O error) and keeps the cursor."""
    import hashlib
    import io

    import httpx
    from PIL import Image

    from astroclassify.errors import StoreFullError
    from astroclassify.sharing.contributions import identify_image
    from astroclassify.sharing.sync import sync
    from astroclassify.store import open_store
    from astroclassify.store.contributions import Contributions, Peers
    from tests.conftest import make_sky

    images, items = {}, []
    for i in range(40):
        buf = io.BytesIO()
        Image.fromarray(make_sky("galaxy", 64, seed=i)).save(buf, format="PNG")
        images[i] = buf.getvalue()
    for n in range(4000):  # 40 images, 100 labels each from 100 people: after the first, no download
        data = images[n % 40]
        items.append(
            {"seq": n + 1, "uid": f"far001-f{n + 1}", "origin": "far001", "contributor": f"far001/p{n // 40}",
             "answer": "galaxy" if n % 3 else "nebula", "image_sha256": hashlib.sha256(data).hexdigest(),
             "pixels_sha256": identify_image(data).pixels_sha256, "image_format": "PNG",
             "made_at": "2026-12-01T10:00:00+00:00", "credit": "x" * 1500}
        )  # fmt: skip

    def peer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/contributions":
            since = int(request.url.params["since"])
            return httpx.Response(200, json={"items": [it for it in items if it["seq"] > since][:200]})
        return httpx.Response(200, content=images[(int(request.url.path.split("/")[3].split("-f")[1]) - 1) % 40])

    home = small_disk / "home"
    with open_store(home) as store:
        first = sync(store, "http://127.0.0.1:9", "k", transport=httpx.MockTransport(peer), max_items=40)
        assert first.received == 200  # one page: every image held
        _fill(small_disk)
        with pytest.raises(StoreFullError, match="store is full"):
            sync(store, "http://127.0.0.1:9", "k", transport=httpx.MockTransport(peer))
        with store.session() as session:
            held = Contributions(session).all()
            cursor = Peers(session).get("http://127.0.0.1:9").cursor
    assert 200 <= len(held) < 4000 and cursor == len(held)  # what arrived is whole, the cursor with it
