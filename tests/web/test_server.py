"""`astroclassify serve` over real HTTP on 127.0.0.1: what only a real server shows.

Twenty concurrent clients against uvicorn's thread pool and SQLite, and the documentation
page's curl commands run as printed. The rest of the API is tested in-process (test_api.py).
"""

import io
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import distinct, jpeg_bytes, make_sky
from tests.web.conftest import serve_process


def _png_bomb() -> bytes:
    from tests.imaging.test_decode import _png_header_only

    return _png_header_only(20000, 20000)


PNG_BOMB = _png_bomb()


@pytest.fixture(scope="module")
def server():
    with serve_process() as base:
        yield base


@pytest.mark.slow
def test_200_classifications_from_20_clients_each_stored_once(server, shared_data):
    from concurrent.futures import ThreadPoolExecutor

    images = sorted((shared_data / "hubble-dso/galaxy").iterdir())[:10]
    payloads = [(f"conc-{i:03d}.jpg", distinct(images[i % 10].read_bytes(), i)) for i in range(200)]

    def send(chunk):
        with httpx.Client(timeout=120) as client:
            return [client.post(f"{server}/api/classify", files={"image": (n, d, "image/jpeg")}) for n, d in chunk]

    with ThreadPoolExecutor(20) as pool:
        responses = [r for rs in pool.map(send, [payloads[i::20] for i in range(20)]) for r in rs]
    assert [r.status_code for r in responses] == [200] * 200
    ids = [r.json()["id"] for r in responses]
    assert len(set(ids)) == 200
    listing = httpx.get(f"{server}/api/classifications", params={"per_page": 200}).json()
    stored = [i for i in listing["items"] if i["file"].startswith("conc-")]
    assert sorted(i["file"] for i in stored) == sorted(n for n, _ in payloads)  # each exactly once
    gallery = httpx.get(f"{server}/gallery").text
    assert "conc-" in gallery


def test_every_curl_example_on_the_documentation_page_works(server, shared_data, tmp_path):
    """Run the page's curl commands as printed, against this server, from a folder with the named files."""
    import html
    import re
    import shutil
    import subprocess
    import zipfile

    if not shutil.which("curl"):
        pytest.skip("curl not installed")
    page = httpx.get(f"{server}/documentation").text
    blocks = [html.unescape(b) for b in re.findall(r"<pre>(.*?)</pre>", page, flags=re.S)]
    commands = [c for b in blocks for c in b.replace("\\\n", " ").splitlines() if c.startswith("curl ")]
    assert len(commands) >= 10
    assert all(server in c and "127.0.0.1:8000" not in c for c in commands)  # the examples name this server
    galaxy = (shared_data / "hubble-dso/galaxy/heic0506a.jpg").read_bytes()
    (tmp_path / "m51.jpg").write_bytes(galaxy)
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(make_sky("nebula", 200)))
    shutil.copyfile(next((shared_data / "hubble-dso/nebula").iterdir()), tmp_path / "b.fits")  # a JPEG misnamed
    from astropy.io import fits

    fits.PrimaryHDU(np.asarray(Image.open(io.BytesIO(galaxy)).convert("L"), np.float32)).writeto(tmp_path / "m51.fits")
    with zipfile.ZipFile(tmp_path / "survey.zip", "w") as zf:
        zf.writestr("one.jpg", galaxy)
    # Record 1 must exist for the examples that use it: classify first, as the page does.
    for command in commands:
        res = subprocess.run(
            f"{command} --silent --show-error --fail-with-body --max-time 60",
            shell=True,
            cwd=tmp_path,
            capture_output=True,
            timeout=90,
        )
        assert res.returncode == 0, f"{command}: {res.stdout[:300]!r} {res.stderr[:300]!r}"
    assert zipfile.is_zipfile(tmp_path / "feedback.zip") and zipfile.is_zipfile(tmp_path / "marks.zip")
    assert (tmp_path / "m51-preview.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    for name in ("m51-gradcam.png", "m51-why-nebula.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_two_worker_processes_answer_without_delayed_acks(shared_data):
    """`serve --workers 2`: both share the port, settings reach them, no 40 ms Nagle stalls."""
    galaxy = (shared_data / "hubble-dso/galaxy/heic0506a.jpg").read_bytes()
    with serve_process({"ASTROCLASSIFY_SERVE_TTA": "none"}, args=("--workers", "2")) as base:
        with httpx.Client(timeout=30) as client:
            times = []
            for _ in range(30):
                t0 = time.perf_counter()
                assert client.get(f"{base}/health").status_code == 200
                times.append(time.perf_counter() - t0)
            assert sorted(times)[15] < 0.02  # median well under the 40 ms a delayed ACK costs
            answers = [
                client.post(f"{base}/api/classify", files={"image": (f"g{i}.jpg", galaxy + bytes([i]))}).json()
                for i in range(4)
            ]
        assert {a["label"] for a in answers} == {"galaxy"} and {a["tta"] for a in answers} == {"none"}
        assert len({a["id"] for a in answers}) == 4  # one database, however many processes


def test_an_idle_connection_outlives_a_clients_pool_expiry(server):
    """A client reuses a pooled connection for up to 5 s (httpx): the server must keep it longer.

    uvicorn's default (5 s) closed it just as httpx reused it: `Connection reset by peer`
    under load. Here a connection idle for 6 s still answers its next request.
    """
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(server)
    request = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{url.port}\r\n\r\n".encode()

    def answer(sock) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < int(
            data.lower().partition(b"content-length:")[2].split(b"\r\n")[0] or b"0"
        ):
            chunk = sock.recv(65536)
            assert chunk, "the server closed the idle connection"
            data += chunk
        return data

    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(request)
        assert answer(sock).startswith(b"HTTP/1.1 200")
        time.sleep(6)
        sock.sendall(request)
        assert answer(sock).startswith(b"HTTP/1.1 200")  # still open after 6 s idle: no reset, no EOF


def test_connections_that_send_nothing_or_trickle_headers_are_closed():
    """Slowloris: 1,100 silent connections held every descriptor for as long as they liked."""
    import select
    import socket
    from urllib.parse import urlsplit

    from tests.web.conftest import serve_process

    env = {"ASTROCLASSIFY_HEADER_TIMEOUT_S": "4", "ASTROCLASSIFY_MAX_CONNECTIONS_PER_ADDRESS": "12"}
    with serve_process(env=env, args=("--workers", "1")) as base:  # the cap is per worker
        url = urlsplit(base)
        time.sleep(0.5)  # the start-up check's own connection closes
        silent = [socket.create_connection((url.hostname, url.port)) for _ in range(20)]
        opened = time.monotonic()
        closed: dict[socket.socket, float] = {}
        try:
            while len(closed) < 20 and time.monotonic() - opened < 10:
                readable, _, _ = select.select([s for s in silent if s not in closed], [], [], 0.1)
                for s in readable:
                    try:
                        data = s.recv(1024)
                    except ConnectionResetError:
                        data = b""
                    if data == b"":
                        closed[s] = time.monotonic() - opened
        finally:
            for s in silent:
                s.close()
        at_once = sorted(t for t in closed.values() if t < 3)
        assert len(at_once) == 8, sorted(closed.values())  # past the address's cap: closed on arrival
        assert len(closed) == 20 and max(closed.values()) < 6.5  # the rest at the header deadline
        with socket.create_connection((url.hostname, url.port)) as trickle:
            started = time.monotonic()
            trickle.sendall(b"GET /health HTTP/1.1\r\n")
            for _ in range(30):  # a header line every half second: never a complete request
                time.sleep(0.5)
                try:
                    trickle.sendall(b"X-a: b\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    break
            assert time.monotonic() - started < 6.5
        assert httpx.get(f"{base}/health", timeout=5).status_code == 200  # everyone else is served
