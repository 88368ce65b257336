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
