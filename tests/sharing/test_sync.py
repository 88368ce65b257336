"""Three installations on loopback share labels: each arrives once, survives restarts and kill -9, and aggregates."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from astroclassify.sharing.votes import aggregate_votes
from astroclassify.store import open_store
from astroclassify.store.api_keys import create_api_key
from astroclassify.store.contributions import Contributions
from tests.conftest import make_sky, run_cli, write_image

pytestmark = pytest.mark.slow


def _key(home: Path) -> str:
    with open_store(home) as store:
        return create_api_key(store, "peer", scope="peer")[1]


def _label(base: str, image: bytes, name: str, label: str) -> None:
    record = httpx.post(f"{base}/api/classify", files={"image": (name, image, "image/png")}, timeout=60).json()
    reply = httpx.post(f"{base}/api/classifications/{record['id']}/feedback", json={"label": label}, timeout=30)
    assert reply.status_code == 200, reply.text


def _uids(home: Path) -> list[str]:
    with open_store(home) as store, store.session() as session:
        return [c.uid for c in Contributions(session).all()]


def _sync(home: Path, peer: str, key: str, *extra: str) -> dict:
    result = run_cli("sync", "--peer", peer, "--key", key, "--json", *extra, env={"ASTROCLASSIFY_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    return [
        write_image(root / f"{i}.png", make_sky("galaxy" if i % 2 else "nebula", 96, seed=70 + i)).read_bytes()
        for i in range(3)
    ]


class _AppTransport(httpx.BaseTransport):
    """``sync``'s requests answered by an app in process (through its TestClient)."""

    def __init__(self, client) -> None:
        self.client = client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        r = self.client.request(request.method, str(request.url), headers=dict(request.headers), content=request.read())
        return httpx.Response(r.status_code, headers=r.headers, content=r.content)


class Installation:  # noqa: D101
    """An installation's web app in process, reachable as a peer at an address of its own (its transport)."""

    def __init__(self, home: Path, address: str) -> None:
        from fastapi.testclient import TestClient

        from astroclassify.config import Settings
        from astroclassify.web.app import create_app

        self.home, self.url = home, f"http://{address}:8000"
        # Uploads come from this machine, as the web page's do; a peer's key is checked wherever it comes from.
        app = create_app(Settings(home=home, allowed_hosts=["*"]))
        self.client = TestClient(app, base_url=self.url, client=("127.0.0.1", 50000))
        self.client.__enter__()

    def label(self, image: bytes, name: str, label: str) -> None:
        record = self.client.post("/api/classify", files={"image": (name, image, "image/png")})
        assert record.status_code == 200, record.text
        reply = self.client.post(f"/api/classifications/{record.json()['id']}/feedback", json={"label": label})
        assert reply.status_code == 200, reply.text

    def sync_from(self, peer: "Installation", key: str) -> dict:
        from astroclassify.sharing.sync import sync

        with open_store(self.home) as store:
            return sync(store, peer.url, key, transport=_AppTransport(peer.client)).to_dict()

    def close(self) -> None:
        self.client.__exit__(None, None, None)


def test_three_installations_share_labels_exactly_once(tmp_path, images):
    """Three web apps in process (what is tested is the exchange, not the processes); each label arrives once."""
    homes = [tmp_path / n for n in "abc"]
    keys = [_key(h) for h in homes]
    a, b, c = (Installation(h, f"127.0.0.{10 + i}") for i, h in enumerate(homes))
    try:
        a.label(images[0], "x.png", "galaxy")
        a.label(images[1], "y.png", "galaxy")
        b.label(images[0], "x-again.png", "nebula")  # the same image, another opinion
        assert a.client.get("/api/contributions").status_code == 401  # no key, no labels
        assert b.sync_from(a, keys[0])["received"] == 2
        relayed = c.sync_from(b, keys[1])  # b's own label and the two it got from a
        assert relayed["received"] == 3 and relayed["images"] == 2  # one image is the same pixels
        assert c.sync_from(a, keys[0]) | {"seconds": 0, "bytes": 0} == {
            "peer": a.url,
            "received": 0,
            "repeats": 2,
            "refused": {},
            "images": 0,
            "cursor": 2,
            "seconds": 0,
            "bytes": 0,
            "stopped": "",
        }
        assert a.sync_from(c, keys[2])["received"] == 1  # b's label reaches a through c
        assert a.sync_from(c, keys[2])["received"] == 0  # again: nothing new, nothing twice
    finally:
        for inst in (a, b, c):
            inst.close()
    for home in homes:  # after the apps stopped, each store holds the same three labels once
        uids = _uids(home)
        assert len(uids) == len(set(uids)) == 3
    b = Installation(homes[1], "127.0.0.11")  # b started again: its labels and cursor kept
    try:
        after = Installation(homes[0], "127.0.0.10")
        try:
            again = after.sync_from(b, keys[1])
        finally:
            after.close()
        assert (again["received"], again["repeats"]) == (0, 3)
    finally:
        b.close()
    assert len(_uids(homes[0])) == 3
    with open_store(homes[2]) as store:
        votes = {v.pixels_sha256: v for v in aggregate_votes(store)}
    shared = next(v for v in votes.values() if v.contributors == 2)
    assert shared.counts == {"galaxy": 1, "nebula": 1} and shared.fractions == {"galaxy": 0.5, "nebula": 0.5}
    assert shared.disputed and shared.agreement == 0.5
    gold = {shared.pixels_sha256: "nebula"}  # a gold image: its label wins
    with open_store(homes[2]) as store:
        judged = {v.pixels_sha256: v for v in aggregate_votes(store, gold=gold)}
    assert judged[shared.pixels_sha256].consensus == "nebula" and judged[shared.pixels_sha256].gold == "nebula"


class FakePeer:
    """A scripted installation on loopback: serves the items given, the image bytes given, as slowly as told."""

    def __init__(self, items, images, *, delay=0.0, page="json"):
        import http.server
        import threading

        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                from urllib.parse import parse_qs, urlparse

                url = urlparse(self.path)
                if url.path == "/api/contributions":
                    if peer.page == "hang":
                        time.sleep(30)
                    q = parse_qs(url.query)
                    since, limit = int(q["since"][0]), int(q["limit"][0])
                    chosen = [it for it in items if it["seq"] > since][:limit]
                    body = b"<html>not json</html>" if peer.page == "html" else json.dumps({"items": chosen}).encode()
                elif url.path.endswith("/image"):
                    time.sleep(peer.delay)
                    body = images.get(url.path.split("/")[3])
                    if body is None:
                        self.send_response(404)
                        self.end_headers()
                        return
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.page, self.delay = page, delay

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # the syncing side hung up on a hanging answer: expected here

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _item(seq, data, *, uid=None, origin="evil00", contributor=None, answer="galaxy", image_sha=None, pixels_sha=None):
    import hashlib

    from astroclassify.sharing.contributions import identify_image

    try:
        identity = identify_image(data)
        pixels = identity.pixels_sha256
    except Exception:
        pixels = "0" * 64
    return {
        "seq": seq,
        "uid": uid or f"{origin}-f{seq}",
        "origin": origin,
        "contributor": contributor or f"{origin}/alice",
        "question": "class",
        "answer": answer,
        "image_sha256": image_sha or hashlib.sha256(data).hexdigest(),
        "pixels_sha256": pixels_sha or pixels,
        "image_format": "PNG",
        "licence": "CC0",
        "credit": "test",
        "made_at": "2026-12-01T10:00:00+00:00",
    }


def _png(seed, size=64):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(make_sky("galaxy", size, seed=seed)).save(buf, format="PNG")
    return buf.getvalue()


def test_a_hostile_peer_is_refused_item_by_item_and_whole(tmp_path):
    home = tmp_path / "home"
    env = {"ASTROCLASSIFY_HOME": str(home), "ASTROCLASSIFY_MAX_FILE_BYTES": "200000"}
    with open_store(home) as store, store.session() as session:
        from astroclassify.store.contributions import installation_id

        ours = installation_id(session)
    good, other, big = _png(1), _png(2), _png(3, size=400) + b"\0" * 300_000
    items, images = [], {}

    def add(data, **kw):
        item = _item(len(items) + 1, data, **kw)
        items.append(item)
        images[item["uid"]] = data
        return item

    add(good)  # taken
    add(other, image_sha="f" * 64)  # the bytes do not match the digest claimed
    add(b"MZ\x90\x00 not an image at all")  # a program, not an image
    add(big)  # over our byte limit
    add(other, contributor="someone-else/bob")  # a contributor not of its origin
    add(other, uid="..%2F..%2Fetc%2Fpasswd")  # a uid that tries to be a path
    add(other, origin=ours, contributor=f"{ours}/me")  # claims to be ours
    add(other, pixels_sha="a" * 64)  # right bytes, wrong pixel digest
    for i in range(55):  # a flood of votes on one image
        add(good, contributor=f"evil00/sock{i}", uid=f"evil00-flood{i}")
    peer = FakePeer(items, images)
    try:
        result = run_cli("sync", "--peer", peer.url, "--key", "k", "--json", env=env)
    finally:
        peer.close()
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["received"] == 50 and report["images"] == 1  # the good item and 49 sock puppets; one download
    assert report["refused"] == {
        "image bytes do not match their digest": 1,
        "not an image we accept": 1,
        "image over our byte limit": 1,
        "contributor not of its origin (forged)": 1,
        "malformed uid, origin or contributor": 1,
        "claims to be ours, but we never made it (forged)": 1,
        "decoded pixels do not match their digest": 1,
        "over 50 votes on one image from this peer (flood)": 6,
    }, report["refused"]
    with open_store(home) as store:
        (votes,) = aggregate_votes(store)
    assert votes.counts == {"galaxy": 50}  # stored, but a gold label would still win:
    with open_store(home) as store:
        (judged,) = aggregate_votes(store, gold={votes.pixels_sha256: "nebula"})
    assert judged.consensus == "nebula"

    for page, message in (("html", "not a contributions page"), ("hang", "no answer within 1 s")):
        peer = FakePeer([_item(1, good, uid="late-1", origin="late")], {"late-1": good}, page=page)
        try:
            started = time.monotonic()
            stopped = run_cli("sync", "--peer", peer.url, "--key", "k", "--timeout", "1", env=env)
        finally:
            peer.close()
        assert stopped.returncode != 0 and message in stopped.stderr and "Traceback" not in stopped.stderr
        assert time.monotonic() - started < 10
    assert len(_uids(home)) == 50  # nothing of ours lost


def test_a_sync_killed_midway_resumes_and_takes_each_label_once(tmp_path):
    home = tmp_path / "home"
    items, images = [], {}
    for i in range(24):
        data = _png(100 + i)
        item = _item(i + 1, data, origin="slow01", contributor="slow01/carol")
        items.append(item)
        images[item["uid"]] = data
    peer = FakePeer(items, images, delay=0.15)
    exe = Path(sys.executable).with_name("astroclassify")
    try:
        proc = subprocess.Popen(
            [str(exe), "sync", "--peer", peer.url, "--key", "k"],
            env={**os.environ, "ASTROCLASSIFY_HOME": str(home)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not (home / "astroclassify.db").exists() or len(_uids(home)) < 5):
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before = len(_uids(home))
        assert 5 <= before < 24
        peer.delay = 0  # the resumed sync need not be slow
        resumed = json.loads(
            run_cli("sync", "--peer", peer.url, "--key", "k", "--json", env={"ASTROCLASSIFY_HOME": str(home)}).stdout
        )
    finally:
        peer.close()
    uids = _uids(home)
    assert len(uids) == len(set(uids)) == 24
    assert resumed["received"] + resumed["repeats"] == 24 - before + resumed["repeats"]
    assert resumed["received"] == 24 - before


def test_one_peer_fills_no_more_than_its_share_of_our_storage(tmp_path):
    """Each sync could add its full 2 GiB budget until the disk filled; a peer's share holds across syncs."""
    home = tmp_path / "home"
    items, images = [], {}
    for i in range(12):
        data = _png(300 + i, size=96)
        item = _item(i + 1, data, origin="big001", contributor="big001/dan", uid=f"big001-{i}")
        items.append(item)
        images[item["uid"]] = data
    share = sum(len(d) for d in list(images.values())[:5]) + 10  # room for five of them
    peer = FakePeer(items, images)
    try:
        first = _sync(home, peer.url, "k", "--peer-max-mb", f"{share / 1024**2:.6f}")
        again = run_cli(
            "sync", "--peer", peer.url, "--key", "k", "--peer-max-mb", f"{share / 1024**2:.6f}",
            env={"ASTROCLASSIFY_HOME": str(home)},
        )  # fmt: skip
    finally:
        peer.close()
    assert first["received"] == 5 and first["stopped"] == "peer's storage share", first
    assert again.returncode == 0 and "used its share of our storage" in again.stdout
    assert "0 label(s) received" in again.stdout and len(_uids(home)) == 5
    stored = sum(p.stat().st_size for p in (home / "images").rglob("*") if p.is_file())
    assert stored <= share
