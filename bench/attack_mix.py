"""The attack mix of issue 10 against a real `astroclassify serve`, and hostile archives against `ingest`.

Server (API keys required, 2 decode slots on 2 cores):
  1. a 1 GiB upload without a key (declared by Content-Length, bytes trickling in);
  2. a 1 GiB upload with a valid key, declared, and another sent chunked (no length);
  3. three 120 MB parts in one batch request, declared and chunked;
  4. six concurrent 49 Mpx RGBA PNGs (7000 x 7000, 190 KB each), at the web limit (40 Mpx)
     and with the limit raised to 50 Mpx so that all six are decoded.
Every answer must be 4xx JSON (or 200 where the image is legal), never 5xx; the server must
still answer /health; its peak resident memory (VmHWM) is reported.

Ingest: robots.txt trickled a byte every 0.1 s, and robots.txt of 3 GiB; each run must end
within its deadline (ASTROCLASSIFY_INGEST_TIMEOUT) with bounded memory.

    python bench/attack_mix.py [--timeout 10]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test suite's archive site stands in for hostile servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int, field: str = "VmHWM") -> float:
    """Peak (VmHWM) or current (VmRSS) resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(home: Path, env_extra: dict, args: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "ASTROCLASSIFY_HOME": str(home), **env_extra}
    exe = Path(sys.executable).with_name("astroclassify")
    proc = subprocess.Popen(
        [str(exe), "serve", "--port", str(port), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def raw_upload(base: str, path: str, *, headers: dict, declared: int | None, send_bytes: int, boundary="x") -> dict:
    """Send a multipart body by hand; stop when the server answers. Returns status, body, bytes sent, seconds."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Type: multipart/form-data; boundary={boundary}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head.append(f"Content-Length: {declared}" if declared is not None else "Transfer-Encoding: chunked")
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="big.jpg"\r\n\r\n'.encode()
    part = part.replace(b'name="images"', b'name="image"') if path == "/api/classify" else part
    chunk = b"\xff\xd8" + b"\0" * (1024 * 1024 - 2)
    sent, start, answer = 0, time.monotonic(), b""
    sock.setblocking(False)

    def send(data: bytes) -> bool:
        nonlocal answer
        view = memoryview(data)
        while view:
            try:
                n = sock.send(view)
                view = view[n:]
            except BlockingIOError:
                time.sleep(0.01)
            except OSError:
                return False
            try:
                got = sock.recv(65536)
                if got:
                    answer += got
                    return False
            except BlockingIOError:
                pass
        return True

    body = [part] + [chunk] * (send_bytes // len(chunk))
    for piece in body:
        data = f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if declared is None else piece
        if not send(data):
            break
        sent += len(piece)
    sock.setblocking(True)
    sock.settimeout(30)
    try:
        while b"\r\n\r\n" not in answer or len(answer) < answer.find(b"\r\n\r\n") + 4 + _length(answer):
            got = sock.recv(65536)
            if not got:
                break
            answer += got
    except OSError:
        pass
    sock.close()
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else None
    body_text = answer.split(b"\r\n\r\n", 1)[1].decode(errors="replace") if b"\r\n\r\n" in answer else ""
    return {
        "status": status,
        "body": body_text[:160],
        "sent_mb": round(sent / 2**20, 1),
        "seconds": round(time.monotonic() - start, 2),
    }


def _length(answer: bytes) -> int:
    for line in answer.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def png_49mpx() -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (7000, 7000), (10, 10, 30, 255)).save(buf, format="PNG")
    return buf.getvalue()


def server_attacks(timeout: float) -> dict:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        exe = Path(sys.executable).with_name("astroclassify")
        key = subprocess.run([str(exe), "keys", "create", "bench"], env={**os.environ, "ASTROCLASSIFY_HOME": str(home)},
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        proc, base = start_server(
            home, {"ASTROCLASSIFY_REQUIRE_API_KEY": "true", "ASTROCLASSIFY_MAX_CONCURRENT_DECODES": "2"}
        )
        try:
            auth = {"X-API-Key": key}
            attacks = {
                "1 GiB, no key, declared": ("/api/classify", {}, 2**30, 2**30),
                "1 GiB, key, declared": ("/api/classify", auth, 2**30, 2**30),
                "1 GiB, key, chunked": ("/api/classify", auth, None, 2**30),
                "3 x 120 MB batch, declared": ("/api/classify/batch", auth, 3 * 120 * 10**6, 3 * 120 * 10**6),
                "3 x 120 MB batch, chunked": ("/api/classify/batch", auth, None, 3 * 120 * 10**6),
            }
            for name, (path, headers, declared, size) in attacks.items():
                results[name] = raw_upload(base, path, headers=headers, declared=declared, send_bytes=size)
                results[name]["server_peak_rss_mb_so_far"] = round(peak_rss_mb(proc.pid))
            png = png_49mpx()
            with ThreadPoolExecutor(6) as pool:
                answers = list(pool.map(lambda i: httpx.post(f"{base}/api/classify", headers=auth, timeout=120,
                                                             files={"image": (f"{i}.png", png + bytes([i]), "image/png")}),
                                        range(6)))  # fmt: skip
            results["6 x 49 Mpx PNG (40 Mpx web limit)"] = {
                "statuses": [a.status_code for a in answers],
                "message": answers[0].json()["error"]["message"] if answers[0].status_code != 200 else "",
                "server_peak_rss_mb_so_far": round(peak_rss_mb(proc.pid)),
            }
            health = httpx.get(f"{base}/health").status_code
            results["server"] = {"health_after": health, "peak_rss_mb": round(peak_rss_mb(proc.pid))}
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        (home / "astroclassify.db").unlink()  # a fresh store: the same PNGs must be decoded again, not looked up
        key = subprocess.run([str(exe), "keys", "create", "bench"], env={**os.environ, "ASTROCLASSIFY_HOME": str(home)},
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        proc, base = start_server(home, {"ASTROCLASSIFY_REQUIRE_API_KEY": "true", "ASTROCLASSIFY_MAX_CONCURRENT_DECODES": "2",
                                         "ASTROCLASSIFY_MAX_UPLOAD_PIXELS": "50000000"})  # fmt: skip
        try:
            idle = peak_rss_mb(proc.pid)
            start = time.monotonic()
            with ThreadPoolExecutor(6) as pool:
                answers = list(pool.map(lambda i: httpx.post(f"{base}/api/classify", headers={"X-API-Key": key}, timeout=300,
                                                             files={"image": (f"{i}.png", png + bytes([i]), "image/png")}),
                                        range(6)))  # fmt: skip
            results["6 x 49 Mpx PNG (limit raised to 50 Mpx: all decoded)"] = {
                "statuses": [a.status_code for a in answers],
                "seconds": round(time.monotonic() - start, 1),
                "peak_rss_mb": round(peak_rss_mb(proc.pid)),
                "rss_before_mb": round(idle),
                "rss_after_mb": round(peak_rss_mb(proc.pid, "VmRSS")),
                "health_after": httpx.get(f"{base}/health").status_code,
            }
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return results


def ingest_attacks(timeout: float) -> dict:
    from tests.ingestion.archive_site import ArchiveSite

    results = {}
    site = ArchiveSite(ROOT.parent / "shared" / "data" / "apod")
    url = site.start()
    try:
        for fault in ("trickle", "endless"):
            site.faults = {"/robots.txt": fault}
            with tempfile.TemporaryDirectory() as tmp:
                env = {**os.environ, "ASTROCLASSIFY_HOME": tmp, "ASTROCLASSIFY_INGEST_TIMEOUT": str(timeout),
                       "ASTROCLASSIFY_INGEST_RETRIES": "1", "ASTROCLASSIFY_INGEST_MIN_INTERVAL": "0"}  # fmt: skip
                cmd = [sys.executable, "-c", "import resource, subprocess, sys; "
                       "r = subprocess.run(sys.argv[1:]); "
                       "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024, r.returncode)",
                       str(Path(sys.executable).with_name("astroclassify")), "ingest", "apod", "--base-url", f"{url}/apod/",
                       "--since", "2023-02-10"]  # fmt: skip
                start = time.monotonic()
                out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=10 * timeout)
                peak, rc = out.stdout.split()[-2:]
                results[f"robots.txt {fault}"] = {
                    "seconds": round(time.monotonic() - start, 1),
                    "exit": int(rc),
                    "peak_rss_mb": int(peak),
                    "robots_bytes_sent_mb": round(site.sent.get("/robots.txt", 0) / 2**20, 1)
                    if fault == "endless"
                    else None,
                    "stderr": out.stderr.strip().splitlines()[-1][:160] if out.stderr.strip() else "",
                }
    finally:
        site.stop()
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=10.0, help="ASTROCLASSIFY_INGEST_TIMEOUT for the ingest runs")
    args = ap.parse_args()
    report = {"server": server_attacks(args.timeout), "ingest": ingest_attacks(args.timeout)}
    print(json.dumps(report, indent=1))
    print(f"reproduce: python bench/attack_mix.py --timeout {args.timeout:g}")


if __name__ == "__main__":
    threading.excepthook = lambda args: None  # the hostile site's threads end abruptly by design
    main()
