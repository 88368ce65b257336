"""Latency and throughput of `POST /api/classify` on a real `astroclassify serve` process.

One client in sequence (p50/p99), then N concurrent clients for a fixed time (requests/s,
p99, errors). The load generator runs on the same machine, as the issue specifies. Where the
time goes comes from the server's own Server-Timing header (decode+resize, inference, store).

    python bench/serve_latency.py --seq 200 --clients 20 --seconds 30 [--tta rot4] [--workers 2] [--model DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
from PIL import Image


def _images(folder: Path, n: int = 20) -> list[bytes]:
    out = []
    for path in sorted(folder.rglob("*.jpg"))[:n]:
        img = Image.open(path).convert("RGB")
        img.thumbnail((500, 500))  # the 500-px JPEGs
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _unique(image: bytes, tag: str) -> bytes:
    """The same JPEG with bytes after its end marker: same pixels, another file.

    The server answers a repeated upload (same bytes, model and TTA) with its first record
    without classifying it again; a benchmark of classification must send new files.
    """
    return image + tag.encode()


def _timing(header: str) -> dict[str, float]:
    parts = (p.strip().split(";dur=") for p in header.split(",") if ";dur=" in p)
    return {k: float(v) for k, v in parts}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared/data/hubble-dso"))
    ap.add_argument("--seq", type=int, default=200)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--tta", default=None, help="serving TTA: model (the default), none, rot4 or rot4flip")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--workers", type=int, default=None, help="serve --workers (default: one per core)")
    ap.add_argument("--model", default=None, help="serve --model (a zoo name or a model folder)")
    args = ap.parse_args()
    images = _images(Path(args.data))
    home = tempfile.mkdtemp(prefix="astroclassify-bench-")
    env = {**os.environ, "ASTROCLASSIFY_HOME": home, "ASTROCLASSIFY_RATE_LIMIT_PER_MINUTE": "0"}
    if args.tta:
        env["ASTROCLASSIFY_SERVE_TTA"] = args.tta
    exe = Path(sys.executable).with_name("astroclassify")
    command = [str(exe), "serve", "--port", str(args.port)]
    command += ["--workers", str(args.workers)] if args.workers else []
    command += ["--model", args.model] if args.model else []
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{args.port}/api/classify"
    try:
        for _ in range(150):
            try:
                httpx.get(f"http://127.0.0.1:{args.port}/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        with httpx.Client(timeout=30) as client:
            for i in range(40):  # warm-up (every worker process)
                client.post(url, files={"image": ("w.jpg", _unique(images[i % len(images)], f"w{i}"), "image/jpeg")})
            lat, parts, explain_urls = [], [], []
            processes = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
            server_cpu0 = sum(sum(p.cpu_times()[:2]) for p in processes)
            for i in range(args.seq):
                t0 = time.perf_counter()
                r = client.post(
                    url, files={"image": (f"s{i}.jpg", _unique(images[i % len(images)], f"s{i}"), "image/jpeg")}
                )
                lat.append(1000 * (time.perf_counter() - t0))
                r.raise_for_status()
                parts.append(_timing(r.headers.get("server-timing", "")))
                explain_urls.append(r.json()["explanation_url"])
            seq_cpu = (sum(sum(p.cpu_times()[:2]) for p in processes) - server_cpu0) / args.seq
            # Grad-CAM overlays: the first request renders (inference + drawing), later ones read the file.
            for label in ("first", "cached"):
                times = []
                for path in explain_urls[:20]:
                    t0 = time.perf_counter()
                    client.get(f"http://127.0.0.1:{args.port}{path}").raise_for_status()
                    times.append(1000 * (time.perf_counter() - t0))
                print(f"explanation.png, {label} request: median {statistics.median(times):.1f} ms")
        p50, p99 = np.percentile(lat, 50), np.percentile(lat, 99)
        print(f"one client, {args.seq} sequential requests: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        print(f"  server CPU per request {1000 * seq_cpu:.1f} ms")
        for key in ("decode", "infer", "store"):
            print(f"  server-side {key:<6} median {statistics.median(p.get(key, 0) for p in parts):.1f} ms")

        stop = time.perf_counter() + args.seconds
        results: list[tuple[float, int]] = []
        lock = threading.Lock()

        def worker(k: int) -> None:
            with httpx.Client(timeout=30) as client:
                i = 0
                while time.perf_counter() < stop:
                    t0 = time.perf_counter()
                    try:
                        code = client.post(
                            url,
                            files={
                                "image": (
                                    f"c{k}-{i}.jpg",
                                    _unique(images[(k + i) % len(images)], f"c{k}-{i}"),
                                    "image/jpeg",
                                )
                            },
                        ).status_code
                    except httpx.HTTPError:
                        code = 0
                    with lock:
                        results.append((1000 * (time.perf_counter() - t0), code))
                    i += 1

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(args.clients)]
        processes = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
        server_cpu0 = sum(sum(p.cpu_times()[:2]) for p in processes)
        client_cpu0 = time.process_time()
        t_start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t_start
        client_cpu = time.process_time() - client_cpu0
        server_cpu = sum(sum(p.cpu_times()[:2]) for p in processes) - server_cpu0
        ok = [ms for ms, code in results if code == 200]
        errors = len(results) - len(ok)
        print(
            f"{args.clients} concurrent clients for {elapsed:.0f} s: {len(ok) / elapsed:.1f} requests/s, "
            f"p50 {np.percentile(ok, 50):.0f} ms, p99 {np.percentile(ok, 99):.0f} ms, {errors} errors"
        )
        print(
            f"  CPU per request: server {1000 * server_cpu / len(results):.1f} ms, "
            f"this load generator {1000 * client_cpu / len(results):.1f} ms "
            f"(of {1000 * elapsed * (os.cpu_count() or 1) / len(results):.1f} ms the cores had per request)"
        )
        print(f"serving TTA: {args.tta or 'the server default (each model its own: rot4 for dso)'}")
        print(f"server processes: {args.workers or os.cpu_count()}; model: {args.model or 'dso (default)'}")
        print("reproduce: python bench/serve_latency.py " + " ".join(sys.argv[1:]))
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
