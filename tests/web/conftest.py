"""Start `astroclassify serve` as a real process on a free loopback port."""

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

LOCAL = ("127.0.0.1", 50000)  # a client address on this machine, for in-process TestClients


@pytest.fixture(scope="module")
def galaxy(shared_data) -> bytes:
    """A real Hubble galaxy (heic0506a.jpg, 500 x 346 px)."""
    return (shared_data / "hubble-dso/galaxy/heic0506a.jpg").read_bytes()


def upload(client, image: bytes, name: str = "g.jpg", **kw):
    """POST one image to /api/classify as the page's form does."""
    return client.post("/api/classify", files={"image": (name, image, "image/jpeg")}, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_process(env: dict[str, str] | None = None, args: tuple[str, ...] = ()):
    """A server with its own home, unless ``env`` names one.

    Module-scoped servers start before the per-test settings fixture, so they must not
    inherit ASTROCLASSIFY_HOME from the environment (it would be the developer's own).
    """
    port = free_port()
    exe = Path(sys.executable).with_name("astroclassify")
    own_home = tempfile.TemporaryDirectory(prefix="astroclassify-serve-")
    env = {"ASTROCLASSIFY_HOME": own_home.name, **(env or {})}
    proc = subprocess.Popen(
        [str(exe), "serve", "--port", str(port), *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise RuntimeError("server did not start")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        proc.stdout.close()
        own_home.cleanup()
