import hashlib
import http.server
import threading
import zipfile
from functools import partial

import pytest

from astroclassify.errors import DataError, IngestError, UnknownNameError
from astroclassify.preparation.collections import fetch, resolve_data
from tests.conftest import make_sky, write_image


@pytest.fixture()
def small_set(tmp_path):
    root = tmp_path / "set"
    lines = ["file,label,sha256"]
    for i, kind in enumerate(["galaxy", "nebula", "galaxy"]):
        p = write_image(root / kind / f"{i}.png", make_sky(kind, seed=i))
        lines.append(f"{kind}/{i}.png,{kind},{hashlib.sha256(p.read_bytes()).hexdigest()}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root


def _zip(folder, dest, extra=None):
    with zipfile.ZipFile(dest, "w") as zf:
        for p in folder.rglob("*"):
            if p.is_file():
                zf.write(p, "wrapped/" + p.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return dest


def test_fetch_folder_and_archive_verify_checksums(small_set, tmp_path):
    assert fetch(str(small_set), tmp_path / "copy") == 3
    assert (tmp_path / "copy" / "manifest.csv").is_file()
    archive = _zip(small_set, tmp_path / "set.zip")
    assert fetch(str(archive), tmp_path / "unzipped") == 3
    assert (tmp_path / "unzipped" / "galaxy" / "0.png").is_file()


def test_fetch_rejects_checksum_mismatch_and_leaves_nothing(small_set, tmp_path):
    (small_set / "galaxy" / "0.png").write_bytes(b"tampered")
    with pytest.raises(IngestError, match="SHA-256 mismatch"):
        fetch(str(small_set), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_fetch_rejects_path_traversal_in_zip(small_set, tmp_path):
    archive = _zip(small_set, tmp_path / "evil.zip", {"../../escape.txt": "x"})
    with pytest.raises(IngestError, match="outside"):
        fetch(str(archive), tmp_path / "out")
    assert not (tmp_path.parent / "escape.txt").exists()


def test_fetch_over_http_from_a_local_server(small_set, tmp_path):
    served = tmp_path / "www"
    served.mkdir()
    _zip(small_set, served / "set.zip")
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert fetch(f"{url}/set.zip", tmp_path / "dl") == 3
        with pytest.raises(IngestError, match="404"):
            fetch(f"{url}/missing.zip", tmp_path / "dl2")
        with pytest.raises(IngestError, match="over the 1000 bytes download limit"):
            fetch(f"{url}/set.zip", tmp_path / "dl3", max_bytes=1000)
        assert not (tmp_path / "dl3").exists()
    finally:
        server.shutdown()
        server.server_close()


def test_collection_names_resolve_to_shared_data(shared_data):
    assert resolve_data("hubble-dso") == shared_data / "hubble-dso"
    with pytest.raises(UnknownNameError, match="did you mean hubble-dso"):
        resolve_data("hubble-dos")
    with pytest.raises(IngestError, match="not empty"):
        fetch("hubble-dso", shared_data / "hubble-dso")  # refuses a non-empty target


def test_fetch_caps_what_an_archive_unpacks(small_set, tmp_path):
    """Limits are checked from the listing, before a byte is written."""
    import tarfile

    from tests.files.test_zipdir import directory_only_zip

    archive = _zip(small_set, tmp_path / "set.zip", {"wrapped/big.bin": b"\0" * 200_000})
    with pytest.raises(IngestError, match="unpacks to at least 2[0-9.]+ KiB, over the 100 KiB limit"):
        fetch(str(archive), tmp_path / "out", max_extracted_bytes=100 * 1024)
    with pytest.raises(IngestError, match="lists 5 entries; the limit is 4"):
        fetch(str(archive), tmp_path / "out", max_files=4)
    listing = tmp_path / "listing.zip"
    listing.write_bytes(directory_only_zip(70_000, zip64=True))
    with pytest.raises(IngestError, match="lists 70000 entries"):
        fetch(str(listing), tmp_path / "out", max_files=1000)  # read from the end record alone
    many = tmp_path / "many.tar.gz"
    with tarfile.open(many, "w:gz") as tf:
        for i in range(50):
            info = tarfile.TarInfo(f"f{i}.txt")
            tf.addfile(info)
    with pytest.raises(IngestError, match="over 10 members"):
        fetch(str(many), tmp_path / "out", max_files=10)
    assert not (tmp_path / "out").exists()


def test_any_dataset_folder_in_the_data_folder_is_a_collection(tmp_path, small_set):
    import shutil

    shutil.copytree(small_set, tmp_path / "my-survey")
    assert resolve_data("my-survey", data_dir=tmp_path) == tmp_path / "my-survey"  # not registered, still found
    (tmp_path / "no-manifest").mkdir()
    with pytest.raises(UnknownNameError):
        resolve_data("no-manifest", data_dir=tmp_path)
    with pytest.raises(DataError, match="not found"):
        resolve_data("../my-survey", data_dir=tmp_path / "elsewhere")
