"""Sync throughput between two installations on loopback: labels and images per second.

Installation A imports hubble-dso as a Galaxy Zoo style collection (``--votes`` votes per
image, so several contributions share one image); A serves it (``astroclassify serve``), and
B pulls everything with ``astroclassify sync``, checking every digest and decoding every image.
A second sync measures the cost of finding nothing new.

    ASTROCLASSIFY_DATA_DIR=../shared/data python bench/sync.py --votes 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--votes", type=int, default=3)
    args = ap.parse_args()
    import pyarrow as pa
    import pyarrow.parquet as pq

    from astroclassify.sharing.exchange import import_collection
    from astroclassify.sharing.sync import sync
    from astroclassify.store import open_store
    from astroclassify.store.api_keys import create_api_key

    data_dir = Path(os.environ.get("ASTROCLASSIFY_DATA_DIR", Path(__file__).resolve().parents[2] / "shared/data"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        coll = tmp_path / "hubble"
        shutil.copytree(data_dir / "hubble-dso", coll)
        import csv

        rows = list(csv.DictReader((coll / "manifest.csv").open()))
        table = [
            {"file": r["file"], "class_galaxy": args.votes if r["label"] == "galaxy" else 0,
             "class_nebula": args.votes if r["label"] == "nebula" else 0, "credit": "ESA/Hubble"}
            for r in rows
        ]  # fmt: skip
        pq.write_table(pa.Table.from_pylist(table), coll / "labels.parquet")
        a_home, b_home = tmp_path / "a", tmp_path / "b"
        with open_store(a_home) as store:
            imported = import_collection(store, coll)
            key = create_api_key(store, "b", scope="peer")[1]
        print(f"A holds {imported.votes} votes on {imported.images} images")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        exe = Path(sys.executable).with_name("astroclassify")
        server = subprocess.Popen(
            [str(exe), "serve", "--port", str(port), "--workers", "1"],
            env={**os.environ, "ASTROCLASSIFY_HOME": str(a_home)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(200):
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            with open_store(b_home) as store:
                t0 = time.perf_counter()
                first = sync(store, base, key)
                t1 = time.perf_counter()
                again = sync(store, base, key)
                t2 = time.perf_counter()
        finally:
            server.terminate()
            server.wait(timeout=20)
    print(
        f"first sync: {first!r} in {t1 - t0:.1f} s: {first.received / (t1 - t0):.0f} labels/s, {first.images / (t1 - t0):.0f} images/s"
    )
    print(f"second sync: {again!r} in {t2 - t1:.2f} s")
    print("command: ASTROCLASSIFY_DATA_DIR=../shared/data python bench/sync.py --votes", args.votes)


if __name__ == "__main__":
    main()
