"""What every request passes before the app reads its body: hosts, keys, rate limits, cross-site posts, sizes.

In-process (FastAPI's TestClient): the app is exactly what ``uvicorn --factory
astroclassify.web.app:create_app`` serves, with the client's address set per test.
"""

import io
import json
import time
import zipfile

import pytest
from fastapi.testclient import TestClient

from astroclassify.config import Settings
from astroclassify.web.app import create_app
from astroclassify.web.ratelimit import RateLimiter, SharedRateLimiter
from tests.conftest import distinct, jpeg_bytes, make_sky, run_cli
from tests.web.conftest import LOCAL, upload

REMOTE = ("203.0.113.9", 50000)


@pytest.fixture
def make_client(tmp_path):
    clients = []

    def make(client=LOCAL, **overrides) -> TestClient:
        settings = Settings(**{"home": tmp_path / "home", "allowed_hosts": ["testserver"], **overrides})
        c = TestClient(create_app(settings), client=client)  # an exception that escapes the app fails the test
        c.__enter__()
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def test_factory_app_requires_keys_for_clients_on_other_machines(make_client, galaxy, tmp_path):
    """`uvicorn --factory ...:create_app` applies the loopback rule itself (it lived only in `serve`)."""
    remote = make_client(client=REMOTE)
    refused = upload(remote, galaxy)
    assert refused.status_code == 401 and "API key is required" in refused.json()["error"]["message"]
    assert remote.get("/api/models").status_code == 401
    assert remote.get("/gallery").status_code == 403  # pages list everyone's records
    assert remote.get("/health").status_code == 200
    local = make_client(client=LOCAL)
    assert upload(local, galaxy).status_code == 200
    env = {"ASTROCLASSIFY_HOME": str(tmp_path / "home")}
    key = run_cli("keys", "create", "far", env=env).stdout.strip()
    keyed = upload(remote, distinct(galaxy, "far"), headers={"X-API-Key": key})
    assert keyed.status_code == 200, keyed.text
    assert make_client(client=REMOTE, require_api_key=False).get("/api/models").status_code == 200


def test_forwarded_for_is_believed_only_from_configured_proxies(make_client):
    spoofing = make_client(rate_limit_per_minute=3)
    answers = [
        spoofing.get("/api/models", headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code for i in range(5)
    ]
    assert answers == [200, 200, 200, 429, 429]  # one client, however many addresses it claims

    proxied = make_client(rate_limit_per_minute=3, trusted_proxies=["127.0.0.1"], require_api_key=False)
    first = [proxied.get("/api/models", headers={"X-Forwarded-For": "198.51.100.7"}).status_code for _ in range(4)]
    assert first == [200, 200, 200, 429]
    other = proxied.get("/api/models", headers={"X-Forwarded-For": "198.51.100.8, 127.0.0.1"})
    assert other.status_code == 200  # another client behind the proxy has its own bucket
    remote = make_client(trusted_proxies=["127.0.0.1"])  # keys decided by the real client's address
    assert remote.get("/api/models", headers={"X-Forwarded-For": "198.51.100.7"}).status_code == 401


def test_pages_and_refused_requests_are_rate_limited(make_client):
    pages = make_client(rate_limit_per_minute=3)
    assert [pages.get("/").status_code for _ in range(4)] == [200, 200, 200, 429]
    assert pages.get("/static/style.css").status_code == 200  # assets do not count
    guesser = make_client(client=REMOTE, rate_limit_per_minute=3)
    bad_key = {"X-API-Key": "ac_00000000_not-a-key"}
    statuses = [guesser.get("/api/models", headers=bad_key).status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]  # key guessing is limited too


@pytest.fixture(params=["memory", "shared"])
def make_limiter(request, tmp_path):
    if request.param == "memory":
        return RateLimiter
    return lambda *a, **kw: SharedRateLimiter(tmp_path / "buckets.sqlite3", *a, **kw)


def test_idle_rate_limit_buckets_are_dropped(monkeypatch, make_limiter):
    import astroclassify.web.ratelimit as rl

    now = [1000.0]
    monkeypatch.setattr(rl.time, "monotonic", lambda: now[0])
    limiter = make_limiter(60)  # one token a second, 60 at most
    for i in range(5000):
        limiter.check(f"ip:10.0.{i // 256}.{i % 256}")
    assert len(limiter) == 5000
    now[0] += 61  # every bucket has refilled: they say nothing a new bucket would not
    limiter.check("ip:192.0.2.1")
    assert len(limiter) == 1
    small = make_limiter(60, max_buckets=100)
    for i in range(1000):
        small.check(f"ip:x{i}")
    assert len(small) <= 100  # a flood of new addresses cannot grow the table without bound


def _spend(path, n, out):
    limiter = SharedRateLimiter(path, 60)
    out.put(sum(limiter.check("key:carol") == 0 for _ in range(n)))


def test_worker_processes_share_one_rate_limit(tmp_path):
    """`serve --workers 2`: a client gets the advertised 60 a minute, not 60 from each worker."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_spend, args=(tmp_path / "b.sqlite3", 50, out)) for _ in range(2)]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    allowed = out.get(timeout=60) + out.get(timeout=60)
    for p in procs:
        p.join()
    refilled = time.monotonic() - t0  # one token a second
    assert 60 <= allowed <= 60 + refilled + 1


def test_host_header_must_be_allowed(make_client):
    client = make_client()
    rebinding = client.get("/api/models", headers={"Host": "attacker.example"})
    assert rebinding.status_code == 400 and rebinding.json()["error"]["type"] == "HostNotAllowed"
    assert client.get("/api/models", headers={"Host": "testserver:8000"}).status_code == 200
    anywhere = make_client(allowed_hosts=["*"])
    assert anywhere.get("/api/models", headers={"Host": "attacker.example"}).status_code == 200


def test_cross_site_posts_are_refused(make_client, galaxy):
    client = make_client()
    record = upload(client, galaxy).json()
    form = f"/classifications/{record['id']}/feedback"
    data = {"label": "nebula", "comment": "x"}
    evil = client.post(form, data=data, headers={"Origin": "https://evil.example"}, follow_redirects=False)
    assert evil.status_code == 403 and evil.json()["error"]["type"] == "CrossSiteRequest"
    bare = client.post(form, data=data, follow_redirects=False)
    assert bare.status_code == 403  # a browser's form post always says where it comes from
    referred = client.post(
        form, data=data, headers={"Referer": "http://testserver/classifications/1"}, follow_redirects=False
    )
    assert referred.status_code == 303
    ok = client.post(form, data=data, headers={"Origin": "http://testserver"}, follow_redirects=False)
    assert ok.status_code == 303
    api = f"/api/classifications/{record['id']}/feedback"
    assert client.post(api, json=data, headers={"Origin": "https://evil.example"}).status_code == 403
    assert upload(client, distinct(galaxy, "x"), headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.post(api, json=data).status_code == 200  # curl and scripts send no Origin


def test_a_page_on_another_port_or_scheme_of_this_host_is_another_site(make_client, galaxy):
    """A notebook on :8888 of the same host must not write corrections or gold labels here."""
    client = make_client()
    record = upload(client, galaxy).json()
    data = {"label": "nebula", "comment": "x"}
    for form in (f"/classifications/{record['id']}/feedback", "/models/dso/review"):
        for origin in ("http://testserver:8888", "https://testserver", "http://testserver:8000"):
            refused = client.post(form, data=data, headers={"Origin": origin}, follow_redirects=False)
            assert refused.status_code == 403, (form, origin)
            assert refused.json()["error"]["type"] == "CrossSiteRequest"
        referer = client.post(form, data=data, headers={"Referer": "http://testserver:8888/x"}, follow_redirects=False)
        assert referer.status_code == 403
    same = client.post(
        f"/classifications/{record['id']}/feedback",
        data=data,
        headers={"Origin": "http://testserver:80"},
        follow_redirects=False,
    )
    assert same.status_code == 303  # the default port is the same origin
    on_port = client.post(
        f"/classifications/{record['id']}/feedback",
        data=data,
        headers={"Origin": "http://testserver:8000", "Host": "testserver:8000"},
        follow_redirects=False,
    )
    assert on_port.status_code == 303  # a server on :8000 and its own page on :8000


def test_bodies_are_refused_by_length_and_while_streaming(make_client, galaxy):
    client = make_client(max_upload_bytes=1_000_000)
    too_big = b"\xff\xd8" + b"0" * 1_400_000
    declared = upload(client, too_big)
    assert declared.status_code == 413 and "over the 1.2 MiB limit" in declared.json()["error"]["message"]

    def chunks():  # no Content-Length: only counting the stream can stop it
        yield b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
        for _ in range(40):
            yield b"0" * 65536

    streamed = client.post(
        "/api/classify", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=x"}
    )
    assert streamed.status_code == 413, streamed.text
    assert set(streamed.json()["error"]) >= {"type", "message"}
    big_json = client.post(
        "/api/classifications/1/feedback",
        content=b"{" + b" " * 2_000_000 + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert big_json.status_code == 413  # JSON bodies are small


def test_every_error_keeps_the_json_shape(make_client, galaxy):
    client = make_client()
    record = upload(client, galaxy).json()
    surrogate = client.post(
        f"/api/classifications/{record['id']}/feedback",
        content=b'{"label": "a\\ud800b"}',
        headers={"Content-Type": "application/json"},
    )
    assert surrogate.status_code == 422
    body = json.loads(surrogate.text)
    assert body["error"]["type"] == "ValidationError" and "input" not in body["error"]["details"][0]

    zip_buf = io.BytesIO()
    with zipfile.ZipFile(zip_buf, "w") as zf:
        zf.writestr("one.jpg", galaxy)
    damaged = zip_buf.getvalue()
    damaged = damaged[: damaged.rfind(b"PK\x05\x06")] + b"PK\x05\x06" + b"\xff" * 18  # central directory broken
    batch = client.post("/api/classify/batch", files={"images": ("set.zip", damaged, "application/zip")})
    assert batch.status_code == 200, batch.text
    assert "not a readable zip archive" in batch.json()["items"][0]["error"]

    from astroclassify.web.deps import _pool

    class Broken:
        def get(self, name=None):
            raise RuntimeError("a bug")

    client.app.dependency_overrides[_pool] = lambda: Broken()
    bug = upload(client, distinct(galaxy, "bug"))
    assert bug.status_code == 500
    assert bug.json() == {
        "error": {"type": "InternalError", "message": "internal server error; the server log has the details"}
    }


def test_batch_holds_each_file_to_the_upload_limit(make_client, galaxy, tmp_path):
    client = make_client(max_upload_bytes=200_000, batch_max_bytes=3_000_000)
    big = jpeg_bytes(make_sky("galaxy", 700), quality=100)
    assert len(big) > 200_000
    files = [("images", ("big.jpg", big, "image/jpeg")), ("images", ("ok.jpg", galaxy, "image/jpeg"))]
    res = client.post("/api/classify/batch", files=files)
    assert res.status_code == 200, res.text
    big_item, ok_item = res.json()["items"]
    assert "over the 195 KiB limit for one file" in big_item["error"]
    assert ok_item["result"]["label"] == "galaxy"
    stored = list((tmp_path / "home" / "uploads").glob("*.*"))
    assert len(stored) == 1  # the refused file was never stored

    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("inside/big.jpg", big)
        zf.writestr("inside/ok.jpg", distinct(galaxy, "zip"))
    res = client.post("/api/classify/batch", files={"images": ("set.zip", zipped.getvalue(), "application/zip")})
    by_name = {i["file"]: i for i in res.json()["items"]}
    assert "over the 195 KiB limit" in by_name["inside/big.jpg"]["error"]
    assert by_name["inside/ok.jpg"]["result"]["label"] == "galaxy"

    total = [("images", (f"{i}.jpg", distinct(galaxy, i), "image/jpeg")) for i in range(170)]  # 3.3 MB
    over = client.post("/api/classify/batch", files=total)
    assert over.status_code == 413 and "over the" in over.json()["error"]["message"]


def test_web_uploads_have_a_lower_pixel_limit_than_the_cli(make_client, tmp_path):
    from PIL import Image

    path = tmp_path / "big.png"
    Image.new("RGBA", (7000, 7000), (10, 10, 30, 255)).save(path)  # 49 Mpx in about 200 KB
    refused = upload(make_client(), path.read_bytes(), "big.png")
    assert refused.status_code == 422
    assert "7000x7000 = 49 Mpx is over the 40 Mpx limit" in refused.json()["error"]["message"]
    raised = upload(make_client(max_upload_pixels=50_000_000), path.read_bytes(), "big.png")
    assert raised.status_code == 200
    cli = run_cli("predict", str(path), "--json")  # the command line keeps its 50 Mpx limit
    assert cli.returncode == 0, cli.stderr


def test_shared_labels_need_a_peer_key_and_the_holders_choice(make_client, galaxy, tmp_path):
    """Key B must not list key A's corrections nor fetch A's private upload through the sharing API."""
    env = {"ASTROCLASSIFY_HOME": str(tmp_path / "home")}
    client = make_client()
    keys = {
        name: run_cli("keys", "create", name, *flags, env=env).stdout.strip()
        for name, flags in (("alice", ()), ("bob", ()), ("carol", ("--share",)), ("peer", ("--peer",)))
    }

    def correct(key: str | None, tag: str, label: str) -> int:
        headers = {"X-API-Key": key} if key else {}
        record = upload(client, distinct(galaxy, tag), headers=headers).json()
        answer = client.post(f"/api/classifications/{record['id']}/feedback", json={"label": label}, headers=headers)
        assert answer.status_code == 200, answer.text
        return record["id"]

    correct(keys["alice"], "private", "nebula")  # alice did not choose to share
    correct(keys["carol"], "shared", "galaxy")  # carol did
    correct(None, "web", "star_cluster")  # the installation's own web collection stays shared
    as_bob = client.get("/api/contributions", headers={"X-API-Key": keys["bob"]})
    assert as_bob.status_code == 403 and "peer key" in as_bob.json()["error"]["message"]
    assert client.get("/api/contributions").status_code == 401
    items = client.get("/api/contributions", headers={"X-API-Key": keys["peer"]}).json()["items"]
    assert sorted(i["answer"] for i in items) == ["galaxy", "star_cluster"]
    assert not any(i["contributor"].endswith(("/key:1", "key:1")) for i in items)
    origin = items[0]["origin"]
    guessed = client.get(f"/api/contributions/{origin}-f1/image", headers={"X-API-Key": keys["peer"]})
    assert guessed.status_code == 404  # alice's correction (feedback 1) was never published
    assert upload(client, distinct(galaxy, "p"), headers={"X-API-Key": keys["peer"]}).status_code == 403
    listing = run_cli("keys", "list", env=env).stdout
    assert "peer" in listing and "yes" in listing


def test_a_held_rate_limit_file_lets_requests_through_at_once(tmp_path):
    """Another worker holding the shared file's lock must stall no one: checks fail open within 0.2 s."""
    import sqlite3

    path = tmp_path / "buckets.sqlite3"
    limiter = SharedRateLimiter(path, 1)
    assert limiter.check("key:x") == 0 and limiter.check("key:x") > 0  # one a minute: the second waits
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a worker stuck inside its transaction
    try:
        started = time.monotonic()
        answers = [limiter.check("key:x") for _ in range(5)]
        took = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert answers == [0.0] * 5 and took < 2.0 and limiter.failed_open == 5
    assert limiter.check("key:x") > 0  # the lock released: held to its rate again
    assert SharedRateLimiter.blocking and not RateLimiter.blocking  # the guard runs the shared one off the loop
