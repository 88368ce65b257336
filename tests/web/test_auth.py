"""API keys and rate limits over real HTTP."""

import httpx
import pytest

from tests.conftest import run_cli
from tests.web.conftest import serve_process


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    home = tmp_path_factory.mktemp("keyed-home")
    env = {
        "ASTROCLASSIFY_HOME": str(home),
        "ASTROCLASSIFY_REQUIRE_API_KEY": "true",
        "ASTROCLASSIFY_RATE_LIMIT_PER_MINUTE": "60",
    }
    keys = {}
    for name in ("alice", "bob", "carol"):
        res = run_cli("keys", "create", name, env=env)
        assert res.returncode == 0, res.stderr
        keys[name] = res.stdout.strip()
    with serve_process(env) as base:
        yield base, keys, env


def test_keys_required_and_checked(keyed, shared_data):
    base, keys, env = keyed
    image = (shared_data / "hubble-dso/galaxy/heic0506a.jpg").read_bytes()
    files = {"image": ("g.jpg", image, "image/jpeg")}
    missing = httpx.post(f"{base}/api/classify", files=files)
    assert missing.status_code == 401 and "API key is required" in missing.json()["error"]["message"]
    bad = httpx.post(f"{base}/api/classify", files=files, headers={"X-API-Key": keys["alice"][:-2] + "xx"})
    assert bad.status_code == 401 and bad.json()["error"]["message"] == "invalid or revoked API key"
    ok = httpx.post(f"{base}/api/classify", files=files, headers={"Authorization": f"Bearer {keys['alice']}"})
    assert ok.status_code == 200, ok.text
    assert httpx.get(f"{base}/health").status_code == 200  # health stays open for monitors


def test_one_key_cannot_see_another_keys_records(keyed, shared_data):
    base, keys, _ = keyed
    image = (shared_data / "hubble-dso/galaxy/heic0506a.jpg").read_bytes()
    alice, bob = {"X-API-Key": keys["alice"]}, {"X-API-Key": keys["bob"]}
    rec = httpx.post(f"{base}/api/classify", files={"image": ("a.jpg", image, "image/jpeg")}, headers=alice).json()
    assert httpx.get(f"{base}/api/classifications/{rec['id']}", headers=alice).status_code == 200
    assert httpx.get(f"{base}/api/classifications/{rec['id']}", headers=bob).status_code == 404
    explanation = f"{base}/api/classifications/{rec['id']}/explanation.png"
    assert httpx.get(explanation, headers=alice).status_code == 200
    assert httpx.get(explanation, headers=bob).status_code == 404
    assert httpx.get(explanation).status_code == 401
    assert (
        httpx.post(f"{base}/api/classifications/{rec['id']}/feedback", json={"label": "x"}, headers=bob).status_code
        == 404
    )
    assert rec["id"] not in [i["id"] for i in httpx.get(f"{base}/api/classifications", headers=bob).json()["items"]]
    assert rec["id"] in [i["id"] for i in httpx.get(f"{base}/api/classifications", headers=alice).json()["items"]]


def test_revoked_key_is_refused(keyed):
    base, keys, env = keyed
    headers = {"X-API-Key": keys["bob"]}
    assert httpx.get(f"{base}/api/models", headers=headers).status_code == 200
    assert run_cli("keys", "revoke", "bob", env=env).returncode == 0
    assert httpx.get(f"{base}/api/models", headers=headers).status_code == 401


def test_rate_limit_answers_429_with_retry_after(keyed):
    base, keys, _ = keyed
    headers = {"X-API-Key": keys["carol"]}
    with httpx.Client(base_url=base, headers=headers) as client:
        answers = [client.get("/api/models") for _ in range(70)]
    statuses = [r.status_code for r in answers]
    assert statuses[:60] == [200] * 60  # a full bucket's burst
    # The bucket refills at one request per second, so some later requests may pass again.
    limited = next(r for r in answers[60:] if r.status_code == 429)
    assert int(limited.headers["Retry-After"]) >= 1
    assert "rate limit of 60 requests per minute" in limited.json()["error"]["message"]
    assert httpx.get(f"{base}/api/models", headers={"X-API-Key": keys["alice"]}).status_code == 200  # per key


def test_a_keyless_upload_is_refused_before_its_body_is_read(keyed):
    """Only a real server shows this: the 401 comes back while the client has sent headers alone."""
    import socket
    import time

    base, _, _ = keyed
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = (
            f"POST /api/classify HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 1073741824\r\n\r\n"
        )
        start = time.monotonic()
        sock.sendall(head.encode())  # a 1 GiB body announced, not one byte of it sent
        answer = b""
        while b"}}" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    text = answer.decode()
    assert text.startswith("HTTP/1.1 401") and time.monotonic() - start < 5
    assert "connection: close" in text.lower() and "an API key is required" in text
