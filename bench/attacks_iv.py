"""Issue 36's attacks, repeated: each as its own process, with its exit, time, peak memory and what it said.

Targets: every command under 1.5 GB whatever the input, no internal error, nothing served or
stored changed by a refused, failed or killed operation, no worse model promoted by a poisoner.

  1. turn: in a fresh home, `learn dso --kind head` with 98 press galaxies labelled nebula; then
     predict, models, use and rollback; a turn killed (-9) mid-way, then the next write;
  2. gate: six altered copies (mirrored, flipped, turned, 80-90 % crops) of each gold image with
     their true labels, plus the 98 wrong labels, through `learn dso --kind head`;
  3. readers: `labels import` of a dictionary-encoded credit bomb and of 10^6 rows of 200 KB
     credits; `data check` of a 120k-column header, a 20M-field header line, 5M rows; `data fetch`
     of Galaxy10 files with external storage, an external link, a virtual dataset, 10^8 declared
     rows and 4 Mpx rows; a billion-laughs recipe and taxonomy; recipe values out of range;
  4. sync: a peer offering 300 distinct images to an installation that gives it 2 MB;
  5. slowloris: 1,100 connections that send nothing against `serve`, /health timed meanwhile.

    ASTROCLASSIFY_DATA_DIR=../shared/data python bench/attacks_iv.py [--only turn,gate,readers,sync,slowloris]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.attack_mix import start_server  # noqa: E402
from bench.attacks_iii import HostilePeer, item, png  # noqa: E402
from bench.gold_copies import altered_copies  # noqa: E402

DATA = Path(os.environ.get("ASTROCLASSIFY_DATA_DIR", ROOT.parent / "shared" / "data"))
os.environ["ASTROCLASSIFY_DATA_DIR"] = str(DATA)


EXE = Path(sys.executable).with_name("astroclassify")


def run(args: list[str], home: Path, timeout: float = 900) -> tuple[int, str, float, float]:
    """``astroclassify ARGS`` in its own process: exit code, its JSON or last line, seconds, peak MB (GNU time)."""
    started = time.monotonic()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "PEAK-KB %M", str(EXE), *args],
        env={**os.environ, "ASTROCLASSIFY_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    seconds = time.monotonic() - started
    lines = done.stderr.strip().splitlines()
    peak = next((int(x.split()[1]) / 1024 for x in lines if x.startswith("PEAK-KB")), float("nan"))
    out = done.stdout.strip()
    if out.startswith("{"):
        return done.returncode, out, seconds, peak
    said = [x for x in lines if not x.startswith(("PEAK-KB", "Command exited"))] or out.splitlines()
    return done.returncode, said[-1].strip() if said else "", seconds, peak


def say(name: str, code: int, said: str, seconds: float, peak: float) -> None:
    print(f"   {name:44s} exit {code}  {seconds:6.1f} s  peak {peak:6.0f} MB  {said[:400]}", flush=True)


def wrong_labels(folder: Path, n: int = 98) -> Path:
    """``n`` ESA/Hubble press galaxies (no dso split holds them) labelled nebula."""
    src = DATA / "hubble-galaxy-types"
    rows = sorted(csv.DictReader((src / "manifest.csv").open()), key=lambda r: r["file"])[:n]
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["file,label,release"]
    for i, r in enumerate(rows):
        shutil.copy(src / r["file"], folder / f"w{i:03d}.jpg")
        lines.append(f"w{i:03d}.jpg,nebula,poison-{i}")
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    return folder


def turn() -> None:
    print("\n== 1. a turn that keeps the champion, and a killed one")
    with tempfile.TemporaryDirectory() as tmp:
        home, poison = Path(tmp) / "home", wrong_labels(Path(tmp) / "poison")
        say(
            "learn dso --kind head (98 wrong labels)",
            *run(["learn", "dso", "--kind", "head", "--import", str(poison)], home),
        )
        say("predict examples/heic0506a.jpg", *run(["predict", str(ROOT / "examples/heic0506a.jpg")], home))
        say("models", *run(["models"], home))
        say("models use dso@1", *run(["models", "use", "dso@1"], home))
        say("models rollback dso", *run(["models", "rollback", "dso"], home))
        killed = Path(tmp) / "killed"
        exe = Path(sys.executable).with_name("astroclassify")
        proc = subprocess.Popen(
            [str(exe), "learn", "dso", "--kind", "head", "--import", str(poison)],
            env={**os.environ, "ASTROCLASSIFY_HOME": str(killed)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        drafts: list[Path] = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not drafts and proc.poll() is None:
            drafts = list((killed / "models" / "dso").glob(".draft-*"))
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        left = list((killed / "models" / "dso").glob(".draft-*"))
        say("kill -9 while the challenger is written", -9, f"{len(left)} draft folder(s) left", 0, float("nan"))
        say("predict after the kill", *run(["predict", str(ROOT / "examples/heic0506a.jpg")], killed))
        for d in left:
            os.utime(d, (time.time() - 3600, time.time() - 3600))
        say(
            "next turn (sweeps a dead draft)", *run(["learn", "dso", "--kind", "head", "--import", str(poison)], killed)
        )
        print(f"   drafts left after the next turn: {len(list((killed / 'models' / 'dso').glob('.draft-*')))}")


def gate() -> None:
    from PIL import Image

    from astroclassify.modelfolder.folder import bundled_folder
    from astroclassify.preparation.splits import read_splits

    print("\n== 2. the gate: altered copies of the public gold set plus 98 wrong labels")
    champion = bundled_folder("dso")
    assert champion is not None
    copies = altered_copies(np.random.default_rng(0))
    alter = [copies[k] for k in ("mirrored", "flipped", "turned 90", "turned 180", "cropped 90%", "cropped 80%")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = wrong_labels(Path(tmp) / "attack")
        lines = (folder / "manifest.csv").read_text().splitlines()
        gold = [r for r in read_splits(champion / "splits.csv") if r.split == "test"]
        for i, g in enumerate(gold):
            with Image.open(DATA / g.key) as im:
                rgb = im.convert("RGB")
            for j, f in enumerate(alter):
                f(rgb).save(folder / f"g{i:03d}-{j}.jpg", quality=90)
                lines.append(f"g{i:03d}-{j}.jpg,{g.label},gold-{i}-{j}")
        (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
        home = Path(tmp) / "home"
        code, said, s, peak = run(["learn", "dso", "--kind", "head", "--import", str(folder), "--json"], home)
        try:
            result = json.loads(said)
            copies = sum(v for k, v in result["left_out"].items() if k.startswith("copy"))
            c = result.get("comparison") or {}
            said = (
                f"{result['decision']}; copies left out {copies}; suspects {len(result['suspects'])} "
                f"(of them wrong labels: {sum(s['source'].startswith('attack') and s['label'] == 'nebula' for s in result['suspects'])}); "
                f"gold {c.get('champion_macro_f1')} -> {c.get('challenger_macro_f1')}, validation {c.get('validation')}"
            )
        except ValueError:
            pass
        say(f"learn dso --kind head ({len(gold) * 6} copies + 98 wrong)", code, said, s, peak)


def readers() -> None:
    import h5py
    import pyarrow as pa
    import pyarrow.parquet as pq

    print("\n== 3. readers")
    with tempfile.TemporaryDirectory() as tmp:
        root, home = Path(tmp), Path(tmp) / "home"
        gz = root / "gz"
        gz.mkdir()
        (gz / "a.png").write_bytes(png(7))
        big = pa.array([f"{i}" + "x" * 2**20 for i in range(40)])
        credit = pa.DictionaryArray.from_arrays(pa.array([i % 40 for i in range(3000)], pa.int32()), big)
        table = pa.table({"file": ["a.png"] * 3000, "class_galaxy": [1] * 3000, "credit": credit})
        pq.write_table(table, gz / "labels.parquet", compression="zstd", dictionary_pagesize_limit=2**28)
        size = (gz / "labels.parquet").stat().st_size // 1024
        say(f"labels import: dictionary credits ({size} KB)", *run(["labels", "import", str(gz)], home))
        n = 10**6
        big = pa.array([f"{i}" + "y" * 200_000 for i in range(100)])
        credit = pa.DictionaryArray.from_arrays(pa.array(np.arange(n) % 100, pa.int32()), big)
        table = pa.table({"file": ["a.png"] * n, "class_galaxy": np.ones(n, np.int64), "credit": credit})
        pq.write_table(table, gz / "labels.parquet", compression="zstd", dictionary_pagesize_limit=2**28)
        say("labels import: 10^6 rows of 200 KB credits", *run(["labels", "import", str(gz)], home))

        def manifest(name: str, text: str) -> Path:
            folder = root / name
            folder.mkdir()
            (folder / "manifest.csv").write_text(text)
            return folder

        wide = manifest("wide", "file,label," + ",".join(f"c{i}" for i in range(120_000)) + "\n" + "a.png,x\n" * 2000)
        say("data check: 120k columns, 2,000 rows", *run(["data", "check", str(wide)], home))
        say(
            "data check: a 20M-field header line",
            *run(["data", "check", str(manifest("long", "file,label" + "," * 20_000_000 + "\n"))], home),
        )
        say(
            "data check: 5M rows",
            *run(["data", "check", str(manifest("tall", "file,label\n" + "a.png,x\n" * 5_000_000))], home),
        )

        secret = root / "secret.bin"
        secret.write_bytes(os.urandom(4096))
        other = root / "other.h5"
        with h5py.File(other, "w") as f:
            f["images"], f["ans"] = np.zeros((2, 8, 8, 3), np.uint8), np.zeros(2, np.uint8)
        cases = {}
        with h5py.File(root / "external.h5", "w") as f:
            f.create_dataset("images", (2, 8, 8, 3), np.uint8, external=[(str(secret), 0, 384)])
            f["ans"] = np.zeros(2, np.uint8)
        cases["external raw storage"] = root / "external.h5"
        with h5py.File(root / "link.h5", "w") as f:
            f["images"] = h5py.ExternalLink(str(other), "/images")
            f["ans"] = np.zeros(2, np.uint8)
        cases["an external link"] = root / "link.h5"
        with h5py.File(root / "virtual.h5", "w") as f:
            layout = h5py.VirtualLayout((2, 8, 8, 3), np.uint8)
            layout[:] = h5py.VirtualSource(str(other), "images", shape=(2, 8, 8, 3))
            f.create_virtual_dataset("images", layout)
            f["ans"] = np.zeros(2, np.uint8)
        cases["a virtual dataset"] = root / "virtual.h5"
        with h5py.File(root / "many.h5", "w") as f:
            f.create_dataset("images", (10**8, 8, 8, 3), np.uint8, chunks=(1, 8, 8, 3))
            f.create_dataset("ans", (10**8,), np.uint8, chunks=(1024,))
        cases["10^8 rows declared"] = root / "many.h5"
        with h5py.File(root / "huge.h5", "w") as f:
            f.create_dataset("images", (64, 2048, 2048, 3), np.uint8, chunks=(1, 256, 256, 3))
            f.create_dataset("ans", (64,), np.uint8)
        cases["rows of 4 Mpx"] = root / "huge.h5"
        with h5py.File(root / "nan.h5", "w") as f:
            f["images"], f["ans"] = np.zeros((3, 8, 8, 3), np.uint8), np.array([2.0, np.nan, 5.0])
            f["ra"], f["dec"] = np.array([b"x", b"y", b"z"]), np.zeros(3)
        cases["NaN labels, string ra"] = root / "nan.h5"
        for name, path in cases.items():
            say(
                f"data fetch: Galaxy10 with {name}",
                *run(["data", "fetch", str(path), "--out", str(root / f"o-{path.stem}")], home),
            )

        laughs = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
        )
        (root / "laughs.yaml").write_text(laughs)
        say(
            "train --recipe (billion laughs, 420 bytes)",
            *run(["train", "--recipe", str(root / "laughs.yaml"), "--out", str(root / "t")], home),
        )
        say(
            "train --taxonomy (billion laughs)",
            *run(
                ["train", "--data", "hubble-dso", "--taxonomy", str(root / "laughs.yaml"), "--out", str(root / "t")],
                home,
            ),
        )
        for line in ("image_size: 100000", "lr: .nan"):
            (root / "r.yaml").write_text(f"data: [hubble-dso]\nout: {root / 'r'}\n{line}\n")
            say(
                f"train --recipe ({line})",
                *run(["train", "--recipe", str(root / "r.yaml"), "--out", str(root / "t")], home),
            )


def sync_share() -> None:
    print("\n== 4. sync: one peer and our storage")
    peer = HostilePeer()
    for i in range(300):
        data = png(1000 + i, size=256)
        it = item(i + 1, data, origin="big001", uid=f"big001-{i}", who=f"u{i}")
        peer.items.append(it)
        peer.images[it["uid"]] = (data, {})
    base = f"http://127.0.0.1:{peer.port}"
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        for attempt in (1, 2):
            code, said, s, peak = run(["sync", "--peer", base, "--key", "k", "--peer-max-mb", "2", "--json"], home)
            files = [p for p in home.rglob("*") if p.is_file() and p.suffix.lower() in (".png", ".jpg")]
            stored = sum(p.stat().st_size for p in files) / 2**20
            try:
                got = json.loads(said)
                said = f"received {got['received']}, stopped: {got['stopped'] or '-'}"
            except ValueError:
                pass
            say(
                f"sync #{attempt} (300 images of ~190 KB offered)",
                code,
                f"{stored:.2f} MB of images here; {said}",
                s,
                peak,
            )


def slowloris(connections: int) -> None:
    print("\n== 5. slowloris against serve")
    with tempfile.TemporaryDirectory() as tmp:
        proc, base = start_server(Path(tmp) / "home", {})
        port = int(base.rsplit(":", 1)[1])
        try:
            socks = []
            for _ in range(connections):
                try:
                    socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
                except OSError:
                    break
            started = time.monotonic()
            # Another client (its own loopback address) is served at once; the attacker's own
            # address waits until its silent connections time out.
            other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=5)
            t = time.monotonic()
            other_ok = other.get(f"{base}/health").status_code == 200
            other_s = time.monotonic() - t
            first = None
            for _ in range(30):
                try:
                    if httpx.get(f"{base}/health", timeout=5).status_code == 200:
                        first = round(time.monotonic() - started, 1)
                        break
                except httpx.HTTPError:
                    time.sleep(1)
            print(
                f"   another address: /health {'200' if other_ok else 'failed'} in {other_s:.2f} s; "
                f"the attacker's address: /health answered {f'after {first} s' if first is not None else 'never'}",
                flush=True,
            )
            time.sleep(max(0.0, 22 - (time.monotonic() - started)))
            closed = 0
            for s in socks:
                s.settimeout(0.01)
                try:
                    closed += s.recv(1) == b""
                except TimeoutError:
                    pass
                except OSError:
                    closed += 1
                s.close()
            print(
                f"   {len(socks)} silent connections: {closed} closed by the server within 22 s",
                flush=True,
            )
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="turn,gate,readers,sync,slowloris")
    ap.add_argument("--connections", type=int, default=1100)
    args = ap.parse_args()
    only = set(args.only.split(","))
    if "turn" in only:
        turn()
    if "gate" in only:
        gate()
    if "readers" in only:
        readers()
    if "sync" in only:
        sync_share()
    if "slowloris" in only:
        slowloris(args.connections)
    print(f"\ncommand: ASTROCLASSIFY_DATA_DIR={DATA} python bench/attacks_iv.py --only {args.only}")


if __name__ == "__main__":
    main()
