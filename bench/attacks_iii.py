"""Issue 28's attacks, repeated: hostile peers, Parquet bombs, cross-port posts, concurrent turns, pausing clients.

Each attacked command runs as its own process (its peak resident memory, from ``wait4``, is
the figure) or against a real ``astroclassify serve`` (VmHWM). Prints what was refused, the
time, peak memory, resets and statuses; targets: peak < 1.5 GB, one line per refusal, no
5xx but 507, no reset, nothing stored lost or changed.

  1. peer: a hostile peer on loopback answering ``gzip, gzip`` pages (3 KB on the wire, 2 GB
     decoded) and images, a single-gzip page of 256 MB, JSON nested 100k deep, a sequence
     number of 10^30, a digest claimed for pixels we hold, 50 sock puppets with 25 relayed
     "third origins" dated 9999, the same peer again as ``localhost``, and one that trickles
     an image every 2 s (the whole sync's deadline);
  2. parquet: ``labels import`` of a 60 KB zstd table that decodes to 2 GB, and of 10^7 rows
     naming one image;
  3. cross-port: a page on another port of this host posts a gold label and a correction;
  4. turns: two ``learn`` turns of one model at once, 8 rounds;
  5. load: 20 clients for 30 s against ``serve --tta none``, half pausing ~5 s between requests
     (httpx's keep-alive expiry), while another process holds the rate-limit file's lock for 7 s.

    python bench/attacks_iii.py [--only peer,parquet,cross-port,turns,load]
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import http.server
import io
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.attack_mix import peak_rss_mb, start_server  # noqa: E402
from bench.attacks_ii import Tally  # noqa: E402

EXE = Path(sys.executable).with_name("astroclassify")
DATA = ROOT.parent / "shared" / "data"


# The command's own peak (VmHWM of its process after exec), written by the command as it exits:
# ``wait4``'s ru_maxrss would count the pages of this script that the fork shared.
PEAK_HOOK = (
    "import atexit, sys\n"
    "def peak():\n"
    "    hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]\n"
    "    print(f'PEAK-KB {hwm}', file=sys.stderr)\n"
    "atexit.register(peak)\n"
    "sys.argv = ['astroclassify', *sys.argv[1:]]\n"
    "from astroclassify.console_script import main\n"
    "main()\n"
)


def run(args: list[str], home: Path, timeout: float = 600) -> tuple[int, str, float, float]:
    """``astroclassify ARGS`` in its own process: exit code, what it said last, seconds, its peak MB."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", PEAK_HOOK, *args],
        env={**os.environ, "ASTROCLASSIFY_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    seconds = time.monotonic() - started
    lines = done.stderr.strip().splitlines()
    peak = next((int(x.split()[1]) / 1024 for x in lines if x.startswith("PEAK-KB")), float("nan"))
    said = "\n".join(x for x in lines if not x.startswith("PEAK-KB")).strip() or done.stdout.strip()
    if not said.startswith("{"):
        said = said.splitlines()[-1] if said else ""
    return done.returncode, said, seconds, peak


def png(seed: int, size: int = 64) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def identity(data: bytes) -> tuple[str, str]:
    from astroclassify.sharing.contributions import identify_image

    i = identify_image(data)
    return i.sha256, i.pixels_sha256


def stacked_gzip(size: int) -> bytes:
    deflater = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\0" * 2**24
    inner = b"".join(deflater.compress(zeros) for _ in range(size // len(zeros))) + deflater.flush()
    return gzip.compress(inner, 9)


class HostilePeer:
    """An installation that answers whatever the current case says."""

    def __init__(self) -> None:
        self.page: bytes | None = None
        self.page_headers: dict[str, str] = {}
        self.items: list[dict] = []
        self.images: dict[str, tuple[bytes, dict]] = {}
        self.delay = 0.0
        peer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                from urllib.parse import parse_qs, urlparse

                url = urlparse(self.path)
                if url.path == "/api/contributions":
                    if peer.page is not None:
                        return self._send(peer.page, peer.page_headers)
                    q = parse_qs(url.query)
                    since, limit = int(q["since"][0]), int(q["limit"][0])
                    chosen = [it for it in peer.items if it["seq"] > since][:limit]
                    return self._send(json.dumps({"items": chosen}).encode(), {})
                time.sleep(peer.delay)
                body, headers = peer.images.get(url.path.split("/")[3], (b"", {}))
                self._send(body, headers, 200 if body else 404)

            def _send(self, body, headers, status=200):
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(ConnectionError):
                    self.wfile.write(body)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = self.server.server_address[1]

    def reset(self) -> None:
        self.page, self.page_headers, self.items, self.images, self.delay = None, {}, [], {}, 0.0


def item(seq, data, *, origin="evil00", who="alice", answer="galaxy", uid=None, **over) -> dict:
    sha, pixels = identity(data)
    return {
        "seq": seq, "uid": uid or f"{origin}-f{seq}", "origin": origin, "contributor": f"{origin}/{who}",
        "question": "class", "answer": answer, "image_sha256": sha, "pixels_sha256": pixels, "image_format": "PNG",
        "licence": "CC0", "credit": "bench", "made_at": "2026-12-01T10:00:00+00:00",
    } | over  # fmt: skip


def peer_attacks() -> None:
    print("\n== 1. a hostile peer (each case a separate `astroclassify sync` process)")
    peer, honest = HostilePeer(), HostilePeer()
    base = f"http://127.0.0.1:{peer.port}"
    bomb = stacked_gzip(2 * 2**30)
    big = gzip.compress(b" " * (256 * 2**20), 9)
    good, other = png(1), png(2)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"

        def case(name: str, url: str = base, *extra: str) -> None:
            code, said, seconds, peak = run(["sync", "--peer", url, "--key", "k", "--json", *extra], home)
            with contextlib.suppress(ValueError):
                said = json.dumps(
                    {k: v for k, v in json.loads(said).items() if k in ("received", "refused", "stopped")}
                )
            print(f"   {name:44s} exit {code}  {seconds:5.1f} s  peak {peak:6.0f} MB  {said[:150]}")

        peer.page, peer.page_headers = bomb, {"Content-Encoding": "gzip, gzip"}
        case(f"page gzip,gzip ({len(bomb) // 1024} KB -> 2 GB)")
        peer.page, peer.page_headers = big, {"Content-Encoding": "gzip"}
        case(f"page gzip ({len(big) // 1024} KB -> 256 MB)")
        peer.page, peer.page_headers = b"[" * 100_000 + b"]" * 100_000, {}
        case("page nested 100k deep")
        peer.page, peer.page_headers = json.dumps({"items": [{"seq": 10**30}]}).encode(), {}
        case("seq 10^30")
        peer.reset()
        honest.items = [item(1, good, origin="good01"), item(2, other, origin="good01")]
        honest.images = {"good01-f1": (good, {}), "good01-f2": (other, {})}
        case("another, honest peer: two items", f"http://127.0.0.1:{honest.port}")
        forged = item(3, good, image_sha256=hashlib.sha256(other).hexdigest())
        image_bomb = item(4, png(99), uid="evil00-bomb")  # an image we do not hold: it is fetched
        peer.items = [forged, image_bomb]
        peer.images = {forged["uid"]: (good, {}), "evil00-bomb": (bomb, {"Content-Encoding": "gzip, gzip"})}
        case("claimed digest; image gzip,gzip (2 GB)")
        puppets = [item(10 + i, other, who=f"sock{i}", answer="nebula") for i in range(50)]
        puppets += [
            item(60 + i, other, origin=f"third{i}", answer="nebula", made_at="9999-12-31T00:00:00") for i in range(25)
        ]
        peer.items, peer.images = puppets, {p["uid"]: (other, {}) for p in puppets}
        case("50 puppets + 25 relayed, made_at 9999")
        more = [item(200 + i, other, who=f"alias{i}", answer="nebula", uid=f"evil00-a{i}") for i in range(40)]
        peer.items, peer.images = more, {p["uid"]: (other, {}) for p in more}
        case("40 more through localhost", f"http://localhost:{peer.port}")
        slow = [item(300 + i, png(300 + i)) for i in range(30)]
        peer.items, peer.images = slow, {p["uid"]: (png(300 + p["seq"] - 300), {}) for p in slow}
        peer.delay = 2.0
        case("trickle: an image every 2 s, --max-minutes 0.1", base, "--max-minutes", "0.1")
        from astroclassify.sharing.votes import aggregate_votes
        from astroclassify.store import open_store
        from astroclassify.store.contributions import Contributions

        with open_store(home) as store:
            votes = {v.pixels_sha256: v for v in aggregate_votes(store)}
            with store.session() as session:
                rows = Contributions(session).all()
                lies = sum(
                    hashlib.sha256((store.images / c.stored_name).read_bytes()).hexdigest() != c.image_sha256
                    for c in rows
                )
        v = votes[identity(other)[1]]
        print(f"   stored {len(rows)} contributions, {lies} whose file does not match its digest")
        print(
            f"   the puppets' image: counts {v.counts}, fractions {v.fractions} (the honest peer's one vote against the hostile peer's 50: one installation each)"
        )
    peer.server.shutdown()
    honest.server.shutdown()


def parquet_attacks() -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    print("\n== 2. labels import (each a separate process)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "gz"
        folder.mkdir()
        (folder / "a.png").write_bytes(png(7))
        schema = pa.schema([("file", pa.string()), ("class_galaxy", pa.int64())])
        with pq.ParquetWriter(folder / "labels.parquet", schema, compression="zstd", use_dictionary=False) as w:
            for _ in range(20):  # 20 row groups of 100 rows of 1 MB: 2 GB decoded
                w.write_table(pa.table({"file": ["a.png" + " " * 2**20] * 100, "class_galaxy": [1] * 100}, schema))
        size = (folder / "labels.parquet").stat().st_size
        code, said, seconds, peak = run(["labels", "import", str(folder)], Path(tmp) / "home")
        print(
            f"   zstd bomb ({size // 1024} KB -> 2 GB)              exit {code}  {seconds:5.1f} s  peak {peak:6.0f} MB  {said[:140]}"
        )
        n = 10**7
        with pq.ParquetWriter(folder / "labels.parquet", schema) as w:
            for _ in range(10):
                w.write_table(pa.table({"file": ["a.png"] * (n // 10), "class_galaxy": [1] * (n // 10)}, schema))
        code, said, seconds, peak = run(["labels", "import", str(folder)], Path(tmp) / "home")
        print(
            f"   10^7 rows naming one image                  exit {code}  {seconds:5.1f} s  peak {peak:6.0f} MB  {said[:140]}"
        )
        n = 10**6  # at the cap: read, each file decoded once, 50 votes kept
        rows = pa.table({"file": ["a.png"] * n, "class_galaxy": [i % 5000 for i in range(n)]})
        pq.write_table(rows, folder / "labels.parquet", row_group_size=100_000)
        code, said, seconds, peak = run(["labels", "import", str(folder)], Path(tmp) / "home")
        print(
            f"   10^6 rows naming one image (at the cap)     exit {code}  {seconds:5.1f} s  peak {peak:6.0f} MB  {said[:140]}"
        )


def cross_port() -> None:
    print("\n== 3. posts from a page on another port of this host")
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_server(Path(tmp) / "home", {}, ("--workers", "1"))
        try:
            image = (DATA / "hubble-dso/galaxy/heic0007b.jpg").read_bytes()
            record = httpx.post(
                f"{base}/api/classify", files={"image": ("g.jpg", image, "image/jpeg")}, timeout=60
            ).json()
            evil = {"Origin": "http://127.0.0.1:8888"}
            for name, path, data in (
                ("gold label on /models/dso/review", "/models/dso/review", {"sha256": "0" * 64, "label": "nebula"}),
                ("correction form", f"/classifications/{record['id']}/feedback", {"label": "nebula", "comment": "x"}),
            ):
                r = httpx.post(f"{base}{path}", data=data, headers=evil, follow_redirects=False, timeout=30)
                print(
                    f"   {name:36s} HTTP {r.status_code} {r.json()['error']['message'][:90] if r.status_code == 403 else ''}"
                )
            after = httpx.get(f"{base}/api/classifications/{record['id']}", timeout=30).json()
            print(
                f"   the record's corrections afterwards: {after.get('feedback') or after.get('corrections') or 'none'}"
            )
        finally:
            proc.terminate()
            proc.wait()


def turns(rounds: int) -> None:
    print(f"\n== 4. two `learn` turns of one model at once, {rounds} rounds")
    sys.path.insert(0, str(ROOT / "tests"))
    from tests.conftest import make_sky, write_image

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "tiny"
        lines = ["file,label,release"]
        for i in range(48):
            kind = "galaxy" if i % 2 == 0 else "nebula"
            write_image(data / f"{kind}/img{i:03d}.png", make_sky(kind, 64, seed=i))
            lines.append(f"{kind}/img{i:03d}.png,{kind},r{i // 2:03d}")
        (data / "manifest.csv").write_text("\n".join(lines) + "\n")
        new = tmp / "new"
        lines = ["file,label,release"]
        for i in range(40):
            kind = "galaxy" if i % 2 == 0 else "nebula"
            write_image(new / f"n{i:03d}.png", make_sky(kind, 64, seed=900 + i))
            lines.append(f"n{i:03d}.png,{kind},n{i:03d}")
        (new / "manifest.csv").write_text("\n".join(lines) + "\n")
        home = tmp / "sky"
        code, said, _, _ = run(
            [
                "train",
                "--data",
                str(data),
                "--out",
                str(home),
                "--model",
                "small_cnn",
                "--image-size",
                "48",
                "--epochs",
                "2",
            ],
            tmp / "h",
        )
        assert code == 0, said
        refused = broken = 0
        for _ in range(rounds):
            procs = [
                subprocess.Popen(
                    [str(EXE), "learn", str(home), "--import", str(new), "--dry-run"],
                    env={**os.environ, "ASTROCLASSIFY_HOME": str(tmp / "h")},
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
                for _ in range(2)
            ]
            for p in procs:
                _, err = p.communicate()
                refused += "another turn" in err.decode()
            from astroclassify.preparation.dataset import load_dataset

            for snap in (home / "learn" / "snapshots").iterdir():
                if snap.name.startswith("."):
                    broken += 1  # a staging folder left behind
                    continue
                ds = load_dataset(snap)
                broken += not (snap / "snapshot.json").is_file() or any(not s.path.is_file() for s in ds.samples)
            shutil_rm(home / "learn" / "snapshots")
        print(f"   {2 * rounds} turns: {refused} refused with 'another turn is running', {broken} broken snapshots")


def shutil_rm(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def load(seconds: float, clients: int) -> None:
    print(f"\n== 5. {clients} clients for {seconds:.0f} s against `serve --tta none --workers 2`, half pausing ~5 s")
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        # A rate high enough not to answer 429 (every client is 127.0.0.1), low enough to be charged in the shared file.
        limit = {"ASTROCLASSIFY_RATE_LIMIT_PER_MINUTE": "1000000"}
        proc, base = start_server(home, limit, ("--workers", "2", "--tta", "none"))
        image = (DATA / "hubble-dso/galaxy/heic0007b.jpg").read_bytes()
        tally = Tally()
        health: list[float] = []
        stop = time.monotonic() + seconds

        def client_run(c: int) -> None:
            rng = random.Random(c)
            with httpx.Client(timeout=30) as client:  # httpx's pool: 5 s keep-alive expiry
                while time.monotonic() < stop:
                    if c % 2 == 0:
                        tally.request(
                            client,
                            "classify",
                            "POST",
                            f"{base}/predict",
                            files={"image": ("g.jpg", image, "image/jpeg")},
                        )
                    else:
                        tally.request(client, "models", "GET", f"{base}/api/models")
                    if c % 2 == 1:  # idle just under httpx's 5 s expiry, as the server's own 5 s ran out: reset
                        time.sleep(rng.uniform(4.97, 5.0))

        def hold_lock() -> None:
            time.sleep(5)
            db = sqlite3.connect(home / "ratelimit.sqlite3", isolation_level=None, timeout=5)
            db.execute("BEGIN IMMEDIATE")
            time.sleep(7)
            db.execute("ROLLBACK")

        def watch_health() -> None:
            with httpx.Client(timeout=30) as client:
                while time.monotonic() < stop:
                    t = time.perf_counter()
                    client.get(f"{base}/health")
                    health.append(time.perf_counter() - t)
                    time.sleep(0.2)

        with ThreadPoolExecutor(clients + 2) as pool:
            jobs = [pool.submit(client_run, c) for c in range(clients)]
            jobs += [pool.submit(hold_lock), pool.submit(watch_health)]
            for j in jobs:
                j.result()
        tally.report("load with pausing clients and a held rate-limit lock")
        print(f"   /health while the lock was held: max {max(health) * 1000:.0f} ms over {len(health)} checks")
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        peaks = [peak_rss_mb(int(pid)) for pid in children]
        print(f"   workers' peak memory {', '.join(f'{p:.0f}' for p in peaks)} MB (VmHWM)")
        proc.terminate()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="peer,parquet,cross-port,turns,load")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--clients", type=int, default=20)
    args = ap.parse_args()
    only = set(args.only.split(","))
    if "peer" in only:
        peer_attacks()
    if "parquet" in only:
        parquet_attacks()
    if "cross-port" in only:
        cross_port()
    if "turns" in only:
        turns(args.rounds)
    if "load" in only:
        load(args.seconds, args.clients)
    print(f"\ncommand: python bench/attacks_iii.py --only {args.only}")


if __name__ == "__main__":
    main()
