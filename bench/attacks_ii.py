"""Issue 17's attacks against a real `astroclassify serve`, with peak memory, times and resets.

  1. FITS cube: a 50 x 4000 x 4000 tile-compressed cube (under 1 MB) to /api/classify and
     /api/preview (was: 28 s and 7.6 GB);
  2. zip directory: a zip listing 1 M entries (47 MB, zip64) to /api/classify/batch, two at
     once (was: 2.3 GB and 22 s each for 5 M);
  3. discovery at 100k records and 10k marks: 5 concurrent clients on /api/anomalies (pages,
     filters), /api/anomalies/map and /similar, marking as they go (was: 15 s and 3 GB a
     ranking, 24 s of t-SNE under a global lock);
  4. full disk: ASTROCLASSIFY_HOME on a 64 MiB tmpfs (needs root), filled, then 900 uploads
     from 6 clients (was: 251 connection resets and 500s);
  5. hostile webhook receiver: a 1 GiB answer and one that trickles a byte every 2 s
     (was: 2.2 GB read, and send() held forever).

Each server runs with one worker process (its peak VmHWM is the figure), records are seeded
straight into SQLite (synthetic clustered embeddings of the bundled dso detector). Prints,
per attack, every status seen, the slowest answer, connection resets, and the server's peak
resident memory; targets: peak < 1.5 GB, 0 resets, no 5xx but 507, every answer < 5 s, and
discovery p99 < 500 ms with < 300 MB extra per endpoint.

    python bench/attacks_ii.py [--records 100000] [--marks 10000] [--only discovery]
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import attack_mix  # noqa: E402
from bench.attack_mix import peak_rss_mb  # noqa: E402
from bench.similarity import vectors  # noqa: E402

EXTRA_ENV = dict(e.split("=", 1) for e in os.environ.get("BENCH_SERVER_ENV", "").split() if e)
GALAXY = ROOT.parent / "shared/data/hubble-dso/galaxy/heic0007b.jpg"


def start_server(home: Path, env_extra: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`astroclassify serve --workers 1`: one process, whose VmHWM is the server's peak."""
    return attack_mix.start_server(home, env_extra or {}, ("--workers", "1"))


class Tally:
    """Statuses, times and resets of a run of requests (thread-safe)."""

    def __init__(self) -> None:
        self.statuses: Counter = Counter()
        self.times: dict[str, list[float]] = {}
        self.resets = 0
        self.lock = threading.Lock()

    def request(self, client: httpx.Client, name: str, method: str, url: str, **kw) -> httpx.Response | None:
        start = time.perf_counter()
        try:
            r = client.request(method, url, **kw)
        except httpx.TransportError:
            with self.lock:
                self.resets += 1
            return None
        with self.lock:
            self.statuses[r.status_code] += 1
            self.times.setdefault(name, []).append(time.perf_counter() - start)
        return r

    def report(self, title: str, pid: int | None = None) -> None:
        slowest = max((max(t) for t in self.times.values()), default=0.0)
        bad = {s: n for s, n in self.statuses.items() if s >= 500 and s != 507}
        print(f"\n== {title}")
        print(
            f"   statuses {dict(sorted(self.statuses.items()))}  resets {self.resets}  5xx other than 507: {bad or 0}"
        )
        print(f"   slowest answer {slowest:.2f} s")
        for name, t in sorted(self.times.items()):
            ms = np.array(t) * 1000
            print(
                f"   {name:24s} n={len(ms):4d}  p50 {np.percentile(ms, 50):7.1f} ms  p99 {np.percentile(ms, 99):7.1f} ms"
                f"  max {ms.max():7.1f} ms"
            )
        if pid:
            print(f"   server peak memory {peak_rss_mb(pid):.0f} MB (VmHWM)")


def seed(home: Path, records: int, marks: int) -> list[int]:
    """``records`` classified images with embeddings and ``marks`` marks, straight into SQLite."""
    from sqlalchemy import insert

    from astroclassify.inference.predictor import OnnxPredictor
    from astroclassify.store import open_store
    from astroclassify.store.tables import Classification, Embedding, Mark

    detector = OnnxPredictor("dso").detector.meta["id"]  # type: ignore[union-attr]
    data = vectors(records).astype(np.float16)
    rng = np.random.default_rng(0)
    labels = np.array(["galaxy", "nebula", "planet"])[rng.integers(0, 3, records)]
    scores = rng.beta(2, 8, records)
    with open_store(home) as store, store.session() as session:
        for start in range(0, records, 20_000):
            block = range(start, min(records, start + 20_000))
            session.execute(
                insert(Classification),
                [
                    {"id": i + 1, "filename": f"{i}.jpg", "stored_name": f"{i:032x}.jpg", "sha256": f"{i:064x}",
                     "image_format": "JPEG", "label": str(labels[i]), "confidence": 0.9,
                     "probabilities": {str(labels[i]): 0.9}, "model_name": "dso", "model_version": "1",
                     "anomaly_score": float(scores[i]), "unusual": bool(scores[i] > 0.6)}
                    for i in block
                ],
            )  # fmt: skip
            session.execute(
                insert(Embedding),
                [{"classification_id": i + 1, "detector": detector, "vector": data[i].tobytes()} for i in block],
            )
        marked = rng.choice(records, size=marks, replace=False) + 1
        session.execute(
            insert(Mark),
            [{"classification_id": int(c), "interesting": bool(rng.random() < 0.2)} for c in marked],
        )
        session.commit()
    return marked.tolist()


def reset_peak(pid: int) -> float:
    """Reset a process's VmHWM to its current RSS (Linux: ``5`` to clear_refs); returns that RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return peak_rss_mb(pid, "VmRSS")


def discovery(records: int, marks: int, clients: int, rounds: int) -> None:
    """A cold start (first requests, background jobs running), then each endpoint alone."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        t = time.perf_counter()
        seed(home, records, marks)
        print(f"seeded {records:,} records and {marks:,} marks in {time.perf_counter() - t:.1f} s")
        proc, base = start_server(home, {"ASTROCLASSIFY_RATE_LIMIT_PER_MINUTE": "100000", **EXTRA_ENV})
        rng = np.random.default_rng(1)
        endpoints = {
            "anomalies page": lambda: (
                "GET",
                "/api/anomalies",
                {"params": {"offset": int(rng.integers(0, 1000)) * 50}},
            ),
            "anomalies filtered": lambda: ("GET", "/api/anomalies", {"params": {"label": "planet", "neighbours": 4}}),
            "map": lambda: ("GET", "/api/anomalies/map", {}),
            "similar": lambda: ("GET", f"/api/classifications/{int(rng.integers(1, records + 1))}/similar", {}),
            "mark": lambda: (
                "POST",
                f"/api/classifications/{int(rng.integers(1, records + 1))}/mark",
                {"json": {"interesting": bool(rng.random() < 0.3)}},
            ),
        }

        def load(names: list[str], n: int, tally: Tally) -> float:
            def client_run(_: int) -> None:
                with httpx.Client(base_url=base, timeout=60) as client:
                    for _ in range(n):
                        for name in names:
                            method, url, kw = endpoints[name]()
                            tally.request(client, name, method, url, **kw)

            t = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(client_run, range(clients)))
            return time.perf_counter() - t

        try:
            rest = reset_peak(proc.pid)
            cold = Tally()
            seconds = load(list(endpoints), 3, cold)
            cold.report(
                f"discovery, cold: first requests of {clients} clients, every endpoint ({seconds:.1f} s)", proc.pid
            )
            print(f"   server memory before {rest:.0f} MB, so {peak_rss_mb(proc.pid) - rest:.0f} MB extra at peak")
            with httpx.Client(base_url=base, timeout=60) as client:  # let the background jobs finish
                for _ in range(600):
                    ranked = client.get("/api/anomalies", params={"limit": 1}).json()
                    mapped = client.get("/api/anomalies/map", params={"limit": 1})
                    if not ranked["updating"] and mapped.headers["X-Map-Layout"] == "tsne":
                        break
                    time.sleep(1)
            print(f"   background work done after {time.perf_counter() - t:.0f} s")
            for names in (["anomalies page", "mark"], ["anomalies filtered"], ["map"], ["similar"]):
                before = reset_peak(proc.pid)
                tally = Tally()
                seconds = load(names, rounds, tally)
                tally.report(f"discovery, warm: {' + '.join(names)}, {clients} clients x {rounds} ({seconds:.1f} s)")
                print(f"   server memory {before:.0f} MB before, {peak_rss_mb(proc.pid) - before:.0f} MB extra at peak")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def cube_and_zip() -> None:
    from astropy.io import fits
    from tests.test_zipdir import directory_only_zip

    cube = np.zeros((50, 4000, 4000), dtype=np.int16)
    buf = io.BytesIO()
    fits.HDUList(
        [fits.PrimaryHDU(), fits.CompImageHDU(cube, compression_type="RICE_1", tile_shape=(1, 4000, 4000))]
    ).writeto(buf)
    cube_bytes = buf.getvalue()
    del cube
    listing = directory_only_zip(1_000_000, zip64=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_server(Path(tmp) / "home")
        try:
            tally = Tally()
            with httpx.Client(base_url=base, timeout=60) as client:
                for path, field in (("/api/classify", "image"), ("/api/preview", "image")):
                    r = tally.request(client, f"cube {path}", "POST", path, files={field: ("cube.fits", cube_bytes)})
                    print(
                        f"   {path}: {r.status_code if r else 'reset'} {r.json()['error']['message'][:110] if r else ''}"
                    )

            def send_zip(_: int) -> None:
                with httpx.Client(base_url=base, timeout=60) as client:
                    r = tally.request(
                        client, "zip batch", "POST", "/api/classify/batch", files={"images": ("z.zip", listing)}
                    )
                    if r is not None and _ == 0:
                        print(f"   batch: {r.status_code} {r.json()['error']['message'][:110]}")

            with ThreadPoolExecutor(2) as pool:
                list(pool.map(send_zip, range(2)))
            tally.report(
                f"FITS cube ({len(cube_bytes) / 1e6:.2f} MB) and zip directory ({len(listing) / 1e6:.0f} MB)", proc.pid
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def full_disk(requests: int, clients: int) -> None:
    from tests.web.test_full_disk import _fill as fill

    galaxy = GALAXY.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        disk = Path(tmp) / "disk"
        disk.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)]).returncode:
            print("\n== full disk: skipped (mounting a tmpfs needs root)")
            return
        try:
            proc, base = start_server(disk / "home", {"ASTROCLASSIFY_RATE_LIMIT_PER_MINUTE": "100000"})
            try:
                fill(disk)
                tally = Tally()

                def client_run(c: int) -> None:
                    with httpx.Client(base_url=base, timeout=60) as client:
                        for i in range(requests // clients):
                            body = galaxy + f"-{c}-{i}".encode()
                            tally.request(client, "upload", "POST", "/api/classify", files={"image": ("g.jpg", body)})

                with ThreadPoolExecutor(clients) as pool:
                    list(pool.map(client_run, range(clients)))
                leftovers = (
                    list((disk / "home" / "uploads").glob(".tmp-*")) if (disk / "home" / "uploads").exists() else []
                )
                tally.report(f"full disk: {requests} uploads from {clients} clients", proc.pid)
                print(f"   half-written files left: {len(leftovers)}")
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        finally:
            subprocess.run(["umount", "-l", str(disk)], check=False)


def hostile_webhook() -> None:
    import resource

    from tests.ingestion.test_watch import Receiver

    from astroclassify.net.alerts import WebhookNotifier

    receiver = Receiver()
    try:
        hook = WebhookNotifier(receiver.url, timeout=10.0)
        print("\n== hostile webhook receiver (deadline 10 s)")
        for mode in ("huge", "trickle"):
            receiver.mode = mode
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            start = time.perf_counter()
            try:
                hook.send({"alert_id": 1, "message": "m"})
                outcome = "delivered"
            except RuntimeError as exc:
                outcome = str(exc)[:70]
            grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
            print(f"   {mode:8s} {time.perf_counter() - start:5.2f} s, peak memory +{grown:.0f} MB: {outcome}")
        print(f"   bytes the 1 GiB receiver got to send before the hang-up: {receiver.sent_bytes / 2**20:.1f} MiB")
    finally:
        receiver.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--marks", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--only", choices=["cube-zip", "discovery", "full-disk", "webhook"])
    args = parser.parse_args()
    if args.only in (None, "cube-zip"):
        cube_and_zip()
    if args.only in (None, "discovery"):
        discovery(args.records, args.marks, args.clients, args.rounds)
    if args.only in (None, "full-disk"):
        full_disk(900, 6)
    if args.only in (None, "webhook"):
        hostile_webhook()
    print("\nreproduce: python bench/attacks_ii.py" + (f" --only {args.only}" if args.only else ""))


if __name__ == "__main__":
    main()
