"""``batch`` throughput on 1 and 2 local workers, memory per worker, a killed worker, and a scaling model.

Inputs are hard links to the real hubble-dso and nasa-planets-galaxies JPEGs (567 images,
mostly about 500 px), repeated to the size asked for, so decoding is real and disk is not.

    python bench/batch.py --images 10000                 # 1 vs 2 workers, predict baseline, memory
    python bench/batch.py --images 100000 --only memory  # peak memory per worker on 100k
    python bench/batch.py --images 10000 --only kill     # kill a worker mid-run, re-run, check

The scaling model (printed at the end) takes the measured images/s per worker and assumes
workers scale linearly: each is independent (its own ORT session, its own partitions), and
the scheduler sends one small message per partition of 512 images, so it is far from being
the bottleneck at hundreds of workers. Cluster start-up is added once; cost is core-hours at
an assumed cloud price. Reading from object storage is not modelled. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def make_inputs(n: int) -> Path:
    root = Path(tempfile.gettempdir()) / f"astroclassify-batch-{n}"
    if root.is_dir() and sum(1 for _ in root.rglob("*.jpg")) == n:
        return root
    shutil.rmtree(root, ignore_errors=True)
    sources = sorted((SHARED / "hubble-dso").rglob("*.jpg")) + sorted((SHARED / "nasa-planets-galaxies").rglob("*.jpg"))
    for i in range(n):
        target = root / f"{i // 1000:04d}" / f"img{i:07d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(sources[i % len(sources)], target)
    return root


def run_batch(inputs: Path, workers: int, tta: str = "none") -> tuple[float, list[int]]:
    """(images/s, peak RSS in MiB of each worker) for one run on a fresh local cluster."""
    from distributed import Client, LocalCluster

    from astroclassify.batching.batch import batch

    out = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    )
    client = Client(cluster)
    try:
        result = batch(str(inputs), out / "results", model="dso", scheduler=cluster.scheduler_address, tta=tta)
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    finally:
        client.close()
        cluster.close()
        shutil.rmtree(out, ignore_errors=True)
    assert result.errors == 0, result.first_errors
    return result.images_per_second, sorted(peaks.values())


def predict_baseline(inputs: Path, n: int, tta: str = "none") -> float:
    """``astroclassify predict`` (one process, ORT on every core) on the first n images."""
    files = sorted(inputs.rglob("*.jpg"))[:n]
    listing = Path(tempfile.mkdtemp()) / "files"
    listing.mkdir()
    for f in files:
        os.link(f, listing / f.name)
    t = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "astroclassify.cli",
            "predict",
            str(listing),
            "--tta",
            tta,
            "--json",
            "--batch-size",
            "32",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    seconds = time.perf_counter() - t
    shutil.rmtree(listing.parent)
    return n / seconds


def kill_a_worker(inputs: Path) -> None:
    """Run in a subprocess, kill one worker process mid-run, re-run: every input exactly once."""
    import psutil
    import pyarrow.dataset as pads

    from astroclassify.batching.batch import list_inputs

    out = Path(tempfile.mkdtemp(prefix="bench-kill-")) / "results"
    command = [
        sys.executable,
        "-m",
        "astroclassify.cli",
        "batch",
        str(inputs),
        "--out",
        str(out),
        "--tta",
        "none",
        "--workers",
        "2",
    ]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob("part-*.parquet"))) < 2:
        time.sleep(0.2)
    workers = [p for p in psutil.Process(proc.pid).children(recursive=True) if "python" in p.name()]
    victim = max(workers, key=lambda p: p.memory_info().rss)  # a worker holds the ORT session
    victim.kill()
    print(f"  killed worker pid {victim.pid} after {len(list(out.glob('part-*.parquet')))} partitions")
    first = proc.wait(timeout=1800)
    second = subprocess.run(command, capture_output=True, text=True)
    rows = pads.dataset(str(out), format="parquet").to_table(columns=["path"]).column("path").to_pylist()
    expected = list_inputs(inputs)
    once = len(rows) == len(set(rows)) and sorted(rows) == expected
    print(f"  first run exit {first}; re-run exit {second.returncode}: {second.stdout.strip()}")
    print(f"  {len(rows)} rows for {len(expected)} inputs; every input exactly once: {once}")
    shutil.rmtree(out.parent, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--only", choices=["speed", "memory", "kill"], action="append")
    args = parser.parse_args()
    inputs = make_inputs(args.images)
    only = set(args.only or ["speed", "memory"])
    measured = {}
    if "speed" in only:
        base = predict_baseline(inputs, min(args.images, 2000))
        print(f"predict (one process, 2 ORT threads), 2000 images: {base:.1f} images/s ({base / 2:.1f} per core)")
        for workers in (1, 2):
            rate, peaks = run_batch(inputs, workers)
            measured[workers] = rate
            print(f"batch, {workers} worker(s), {args.images} images: {rate:.1f} images/s; worker peak RSS {peaks} MiB")
        print(
            f"2 workers / 1 worker: {measured[2] / measured[1]:.2f}x; per core vs predict per core: {measured[2] / base:.2f}"
        )
    if "memory" in only and "speed" not in only:
        rate, peaks = run_batch(inputs, 2)
        measured[2] = rate
        print(f"batch, 2 workers, {args.images} images: {rate:.1f} images/s; worker peak RSS {peaks} MiB")
    if "kill" in only:
        kill_a_worker(inputs)
    if measured:
        per_worker = measured.get(2, 0) / 2 or measured.get(1, 0)
        price = 0.05  # USD per core-hour: an assumed on-demand cloud price, not a measurement
        print(f"scaling model: {per_worker:.1f} images/s per single-threaded worker (measured), linear in workers,")
        print(f"  plus 60 s of cluster start-up; cost at an assumed ${price} per core-hour:")
        for workers in (2, 16, 64, 256):
            hours_per_million = 1e6 / (per_worker * workers) / 3600
            hours_100m = 100 * hours_per_million + 60 / 3600
            core_hours = 1e6 / per_worker / 3600
            print(
                f"  {workers:>4} workers: {hours_per_million * 60:7.1f} min per 1M images; 100M in {hours_100m:6.1f} h; "
                f"{core_hours:.1f} core-hours = ${core_hours * price:.2f} per 1M"
            )
    print(f"command: python bench/batch.py --images {args.images}" + "".join(f" --only {o}" for o in args.only or []))


if __name__ == "__main__":
    main()
