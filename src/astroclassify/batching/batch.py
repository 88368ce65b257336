"""Classify a collection on Dask ``distributed``: a folder, a glob, a manifest or URLs in, Parquet out.

The inputs are listed once, sorted, and cut into partitions of ``partition_size`` files.
Each partition is one task: a worker decodes its files and runs them through one ONNX
Runtime session that the worker process loads once (``_session``) and keeps for every
later task, then writes ``part-NNNNN.parquet`` under a temporary name and renames it. A
partition file therefore exists whole or not at all, so a re-run skips what is written
and a killed worker's partition is simply done again: every input ends up in the output
exactly once. ``_batch.json`` records the inputs and settings, so a re-run into the same
folder with different ones is refused rather than mixed.

A bad file is a row with ``error`` set, never a failed task. The scheduler is a
``LocalCluster`` of single-threaded worker processes by default (on 2 cores two processes
with one ORT thread each beat one with two), or any ``distributed`` scheduler address, in
which case ``out`` must be a path or fsspec URL the workers can write to.
"""

from __future__ import annotations

import glob as globbing
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from astroclassify.config import DEFAULT_LIMITS, DecodeLimits
from astroclassify.errors import ConfigError, DataError, ModelError
from astroclassify.imaging.tta import TTA, tta_mode

log = logging.getLogger(__name__)

__all__ = ["BatchResult", "batch", "list_inputs"]

PARTITION_SIZE = 512
MANIFEST_COLUMNS = ("path", "url", "file", "filename")
PROGRESS_FILE = "_batch.json"


@dataclass
class BatchResult:
    """What a batch run wrote: counts, time, throughput, where."""

    out: Path | str
    images: int
    errors: int
    partitions: int
    skipped_partitions: int
    seconds: float
    workers: int
    first_errors: list[str] = field(default_factory=list)
    skipped_images: int = 0  # in partitions an earlier run wrote

    @property
    def images_per_second(self) -> float:
        done = self.images - self.skipped_images
        return done / self.seconds if self.seconds > 0 else 0.0

    def __repr__(self) -> str:
        return f"BatchResult({self.summary()})"

    def summary(self) -> str:
        """One line: what was written, how fast, and what an earlier run had already done."""
        parts = f"{self.partitions} partition{'s' if self.partitions != 1 else ''}"
        head = f"{self.images} images in {parts} at {self.out}: {self.errors} errors"
        if self.skipped_partitions == self.partitions:
            return f"{head}; all written by an earlier run, nothing to do"
        done = f"{self.images_per_second:.1f} images/s on {self.workers} worker{'s' if self.workers != 1 else ''}"
        earlier = f", {self.skipped_partitions} already written" if self.skipped_partitions else ""
        return f"{head}, {done}{earlier}"


# -- listing inputs -----------------------------------------------------------------------


def list_inputs(source: str | Path | Sequence[str | Path]) -> list[str]:
    """Every input named by ``source``: folders (searched recursively), globs, manifests, URLs.

    A CSV or Parquet manifest names its images in a ``path`` or ``url`` column (relative
    paths are relative to the manifest). URLs (``http(s)://``, ``file://``, any fsspec
    protocol) are kept as they are; workers open them with fsspec.
    """
    from astroclassify.imaging.files import find_images

    items = [source] if isinstance(source, str | Path) else list(source)
    found: list[str] = []
    for item in map(str, items):
        if "://" in item:
            found.append(item)
        elif Path(item).suffix.lower() in (".csv", ".parquet") and Path(item).is_file():
            found += _from_manifest(Path(item))
        elif any(c in item for c in "*?[") and not Path(item).exists():
            matches = sorted(globbing.glob(item, recursive=True))
            if not matches:
                raise DataError(f"{item}: the pattern matches no file")
            found += [str(Path(m)) for m in matches if Path(m).is_file()]
        elif Path(item).is_dir():
            listing = find_images([item])
            # A file that is not an image gets a row saying so, as a named file does; hidden files are no inputs.
            found += [str(p) for p in listing.files] + [str(p) for p, why in listing.skipped if why != "hidden file"]
        elif Path(item).is_file():
            found.append(item)
        else:
            raise DataError(f"{item}: no such file, folder, manifest or pattern")
    if not found:
        raise DataError(f"no images in {', '.join(map(str, items))}")
    return sorted(dict.fromkeys(found))


def _from_manifest(path: Path) -> list[str]:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path) if path.suffix.lower() == ".parquet" else pacsv.read_csv(path)
    except Exception as exc:  # pyarrow raises its own types for malformed files
        raise DataError(f"{path}: unreadable manifest ({exc})") from None
    column = next((c for c in MANIFEST_COLUMNS if c in table.column_names), None)
    if column is None:
        raise DataError(f"{path}: a manifest needs a column named one of {', '.join(MANIFEST_COLUMNS)}")
    out = []
    for value in table.column(column).to_pylist():
        if value is None or str(value).strip() == "":
            continue
        value = str(value).strip()
        out.append(value if "://" in value or Path(value).is_absolute() else str(path.parent / value))
    return out


# -- running --------------------------------------------------------------------------------


def batch(
    source: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    model: str | Path = "dso",
    scheduler: str | None = None,
    workers: int | None = None,
    threads_per_worker: int = 1,
    embeddings: bool = False,
    tta: TTA | str | None = None,
    detector: str | Path | None = None,
    partition_size: int | None = None,
    models_dir: Path | None = None,
    limits: DecodeLimits | None = None,
    progress: Callable[[str, int], Callable[[int], Any]] | None = None,
) -> BatchResult:
    """Classify every input on Dask and write a Parquet dataset, one file per partition.

    Parameters
    ----------
    source : str, Path or sequence
        Folders, globs (``"survey/**/*.fits"``), CSV/Parquet manifests with a ``path`` or
        ``url`` column, or URLs.
    out : str or Path
        The output folder (created). Re-running into it resumes.
    model : str or Path
        Model name or folder; its own detector adds ``anomaly_score`` and ``unusual``.
    scheduler : str, optional
        A ``distributed`` scheduler address (``tcp://host:8786``); default: a local cluster.
    workers : int, optional
        Local worker processes (default: one per core).
    threads_per_worker : int
        ONNX Runtime threads in each worker.
    embeddings : bool
        Add each image's compact embedding (needs a detector) as an ``embedding`` column.
    partition_size : int
        Files per task and per output file.
    limits : DecodeLimits, optional
        What one image may cost to decode (default: 50 Mpx, 64 MiB).

    Returns
    -------
    BatchResult
        Counts, errors, seconds and images per second.
    """
    from astroclassify.modelfolder.folder import resolve_bundle

    if partition_size is not None and partition_size < 1:
        raise ConfigError(f"partition_size must be at least 1; got {partition_size}")
    tta = tta_mode(tta)  # before anything is written: the run's claim file records it
    inputs = list_inputs(source)
    fs, root = _filesystem(out)
    partition_size = partition_size or _earlier_partition_size(fs, root) or auto_partition_size(len(inputs), workers)
    model_path = str(resolve_bundle(model, models_dir=models_dir))
    if embeddings and not detector and not (Path(model_path) / "detector" / "detector.json").is_file():
        raise ConfigError(
            f"--embeddings needs an anomaly detector (its projection makes the compact embedding); "
            f"fit one with `astroclassify anomalies fit --model {model_path}`"
        )
    settings = {
        "model": model_path,
        **_model_identity(Path(model_path)),
        "detector": str(detector) if detector else None,
        "tta": tta,
        "embeddings": embeddings,
        "partition_size": partition_size,
        "inputs": hashlib.sha256("\n".join(inputs).encode()).hexdigest(),
        "n_inputs": len(inputs),
    }
    _claim(fs, root, settings)
    for leftover in fs.glob(f"{root}/_tmp-*"):  # from workers killed mid-write
        fs.rm(leftover)
    parts = [inputs[i : i + partition_size] for i in range(0, len(inputs), partition_size)]
    done = {p for p in range(len(parts)) if fs.exists(_part_path(root, p))}
    todo = [p for p in range(len(parts)) if p not in done]
    # What each worker needs: the run's settings that shape the answers, and its limits.
    options = {k: settings[k] for k in ("model", "model_version", "detector", "tta", "embeddings")} | {
        "threads": threads_per_worker,
        "limits": limits or DEFAULT_LIMITS,
    }
    advance = progress("classifying", len(inputs)) if progress else (lambda n=1: None)
    advance(sum(len(parts[p]) for p in done))
    started = time.perf_counter()
    errors, n_workers = 0, 0
    first_errors: list[str] = []
    run_id = str(settings["inputs"])[:8]
    if todo:
        client, cluster = _client(scheduler, workers, threads_per_worker)
        try:
            n_workers = len(client.scheduler_info()["workers"])
            from distributed import as_completed

            futures = [
                client.submit(
                    _run_partition,
                    p,
                    parts[p],
                    root,
                    fs.protocol,
                    options,
                    key=f"partition-{p}-{run_id}",
                    retries=1,
                )
                for p in todo
            ]
            for future in as_completed(futures):
                summary = future.result()
                errors += summary["errors"]
                first_errors += summary["first_errors"][: max(0, 5 - len(first_errors))]
                advance(summary["images"])
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    seconds = time.perf_counter() - started
    skipped_images = sum(len(parts[p]) for p in done)
    result = BatchResult(
        out,
        len(inputs),
        errors + _errors_in(fs, root, sorted(done)),
        len(parts),
        len(done),
        seconds,
        n_workers,
        first_errors,
        skipped_images=skipped_images,
    )
    return result


def _client(scheduler: str | None, workers: int | None, threads: int):
    from distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler), None
    processes = worker_processes_can_start()
    if not processes:
        log.warning(
            "batch: worker processes cannot start from %s (a script that calls batch outside "
            '`if __name__ == "__main__":`, or standard input); using threads in this process',
            sys.modules["__main__"].__file__,
        )
    cluster = LocalCluster(
        n_workers=workers or os.cpu_count() or 1,
        threads_per_worker=1,  # one task at a time per worker; ORT gets `threads` inside it
        processes=processes,
        dashboard_address=":0",  # any free port: None still tries 8787, taken by a second run
        silence_logs=40,
    )
    return Client(cluster), cluster


def worker_processes_can_start() -> bool:
    """Whether Dask's worker processes can start from here.

    They start by spawning a new interpreter that runs the ``__main__`` module's file again
    (notebooks, ``python -c`` and ``python -m`` are skipped): a script that calls ``batch``
    outside ``if __name__ == "__main__":`` would start workers from inside a worker, and
    standard input cannot be read twice ("Nanny failed to start"). Those get threads instead.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    spec = getattr(main, "__spec__", None)
    if path is None or (spec is not None and spec.name.endswith("__main__")):
        return True  # a notebook, `python -c`, or `python -m`: not imported again
    if not Path(path).is_file():
        return False  # `python -`: a worker would look for a file named <stdin>
    try:
        return "__main__" in Path(path).read_text(errors="replace")
    except OSError:
        return True


def _filesystem(out: str | Path):
    import fsspec

    fs, root = fsspec.core.url_to_fs(str(out))
    fs.makedirs(root, exist_ok=True)
    return fs, root


def _model_identity(folder: Path) -> dict[str, str]:
    """The model's version and the SHA-256 of its weights: a model retrained in place at the
    same path is another model, and its answers must not join the first one's."""
    from astroclassify.modelfolder.folder import load_bundle

    digest = hashlib.sha256()
    with (folder / "model.onnx").open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return {"model_version": load_bundle(folder).version, "model_sha256": digest.hexdigest()}


def auto_partition_size(n_inputs: int, workers: int | None) -> int:
    """Files per partition: about four partitions per worker, so every worker has work and a slow
    partition is not the last one running, and at most ``PARTITION_SIZE`` (memory, resume granularity).

    202 files on 2 workers made one partition of 512 before: one worker worked.
    """
    n_workers = workers or os.cpu_count() or 1
    return max(1, min(PARTITION_SIZE, -(-n_inputs // (4 * n_workers))))


def _earlier_partition_size(fs, root: str) -> int | None:
    """A resumed run keeps its partitions, whatever the workers now (they shape its output files)."""
    path = f"{root}/{PROGRESS_FILE}"
    if not fs.exists(path):
        return None
    try:
        with fs.open(path, "r") as fh:
            size = json.load(fh).get("partition_size")
    except (OSError, ValueError, AttributeError):
        return None  # _claim says what is wrong with the file
    return size if isinstance(size, int) and size > 0 else None


def _claim(fs, root: str, settings: dict) -> None:
    """Record the run's inputs and settings; refuse to mix another run into the same folder."""
    path = f"{root}/{PROGRESS_FILE}"
    if fs.exists(path):
        with fs.open(path, "r") as fh:
            earlier = json.load(fh)
        if earlier != settings:
            changed = sorted(k for k in settings if earlier.get(k) != settings[k])
            if {"model_version", "model_sha256"} & set(changed):
                was = f"version {earlier.get('model_version', 'unknown')} ({str(earlier.get('model_sha256'))[:12]})"
                now = f"version {settings['model_version']} ({settings['model_sha256'][:12]})"
                raise ConfigError(
                    f"{root} holds answers of model {earlier.get('model')} {was}; this run's model "
                    f"{settings.get('model')} is {now}. "
                    "Their answers would be mixed: choose another --out, or remove the folder to classify again"
                )
            raise ConfigError(
                f"{root} holds a batch run with other {', '.join(changed)}; choose another --out or remove it"
            )
        return
    with fs.open(path, "w") as fh:
        json.dump(settings, fh, indent=1)


def _part_path(root: str, index: int) -> str:
    return f"{root}/part-{index:05d}.parquet"


def _errors_in(fs, root: str, parts: list[int]) -> int:
    """Errors recorded in partitions a previous run wrote (for the summary)."""
    if not parts:
        return 0
    import pyarrow.parquet as pq

    total = 0
    for p in parts:
        # On this thread only: Arrow's thread pools, once started by a read, were sometimes torn
        # down at interpreter exit with a thread still alive, and the process aborted ("terminate
        # called without an active exception", exit 134; about 1 re-run in 10, apache/arrow#34314).
        with fs.open(_part_path(root, p), "rb") as fh:
            column = pq.ParquetFile(fh, pre_buffer=False).read(columns=["error"], use_threads=False).column("error")
        total += len(column) - column.null_count
    return total


# -- on the workers ---------------------------------------------------------------------------

_SESSIONS: dict[tuple, Any] = {}


def _session(options: dict):
    """This worker process's predictor for ``options``: loaded on its first task, then kept."""
    key = tuple(options[k] for k in ("model", "model_version", "detector", "threads", "limits"))
    predictor = _SESSIONS.get(key)
    if predictor is None:
        from astroclassify.inference.predictor import OnnxPredictor

        predictor = OnnxPredictor(
            options["model"], threads=options["threads"], detector=options["detector"], limits=options["limits"]
        )
        if predictor.bundle.version != options["model_version"]:  # replaced since the run was claimed
            raise ModelError(
                f"{options['model']} is now version {predictor.bundle.version}, not the "
                f"{options['model_version']} this run started with; re-run into another --out"
            )
        _SESSIONS[key] = predictor
    return predictor


def _run_partition(index: int, files: list[str], root: str, protocol, options: dict) -> dict:
    """Classify one partition and write its Parquet file atomically; returns a summary."""
    import fsspec

    fs = fsspec.filesystem(protocol[0] if isinstance(protocol, tuple | list) else protocol)
    predictor = _session(options)
    rows = _classify(predictor, files, options)
    table = _table(rows, predictor, options)
    final = _part_path(root, index)
    tmp = f"{root}/_tmp-{index:05d}-{os.getpid()}.parquet"  # "_" first: Parquet readers skip it
    import pyarrow.parquet as pq

    with fs.open(tmp, "wb") as fh:
        pq.write_table(table, fh)
    fs.mv(tmp, final)
    errors = [f"{r['path']}: {r['error']}" for r in rows if r["error"]]
    return {"images": len(rows), "errors": len(errors), "first_errors": errors[:5]}


def _classify(predictor, files: list[str], options: dict) -> list[dict]:
    from astroclassify.inference.chunks import in_chunks

    def prepare(path: str) -> np.ndarray:
        return predictor.prepare(_read(path, predictor.limits.max_bytes) if "://" in path else path)

    def infer(batch: np.ndarray, paths: list[str]) -> list:
        return predictor.outcomes(batch, options["tta"])

    rows: list[dict] = []
    # ImportError: a protocol whose fsspec package is missing
    for c in in_chunks(files, prepare, infer, errors=(DataError, OSError, ImportError, ValueError)):
        row: dict[str, Any] = {"path": c.item, "error": None}
        if isinstance(c.error, DataError):
            row["error"] = str(c.error).removeprefix(f"{c.item}: ").removeprefix("<bytes>: ")
        elif c.error is not None:
            row["error"] = f"cannot read ({c.error})"
        elif (o := c.result) is not None:
            row |= {
                "probabilities": o.probabilities,
                "anomaly_score": o.anomaly_score,
                "unusual": o.unusual,
                "embedding": o.embedding,
                "tags": o.tags,
            }
        rows.append(row)
    return rows


def _read(url: str, max_bytes: int) -> bytes:
    """A URL's bytes, at most ``max_bytes``: http(s) through httpx, other protocols through fsspec.

    httpx rather than fsspec's HTTP file system, which needs aiohttp; an error here is the
    file's row, never the job's.
    """
    if url.startswith(("http://", "https://")):
        import httpx

        from astroclassify.net.http import ACCEPT_ENCODING, read_capped

        try:
            headers = {"Accept-Encoding": ACCEPT_ENCODING}
            with httpx.stream("GET", url, timeout=60, follow_redirects=True, headers=headers) as response:
                if response.status_code != 200:
                    raise OSError(f"HTTP {response.status_code}")
                data = read_capped(response, max_bytes)
                if data is None:
                    raise OSError(f"over the {max_bytes} byte limit")
                return data
        except httpx.HTTPError as exc:
            raise OSError(str(exc) or type(exc).__name__) from None
    import fsspec

    with fsspec.open(url, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise OSError(f"over the {max_bytes} byte limit")
    return data


def _table(rows: list[dict], predictor, options: dict):
    import pyarrow as pa

    labels = list(predictor.labels)
    probs = np.array(
        [r.get("probabilities") if r.get("probabilities") is not None else [np.nan] * len(labels) for r in rows]
    )
    ok = np.array([r["error"] is None for r in rows])
    best = probs.argmax(axis=1) if len(rows) else np.zeros(0, int)
    columns: dict[str, Any] = {
        "path": pa.array([r["path"] for r in rows], pa.string()),
        "label": pa.array([labels[b] if k else None for b, k in zip(best, ok, strict=True)], pa.string()),
        "confidence": pa.array(
            [float(probs[i, b]) if k else None for i, (b, k) in enumerate(zip(best, ok, strict=True))], pa.float32()
        ),
    }
    for j, label in enumerate(labels):
        columns[f"p_{label}"] = pa.array([float(probs[i, j]) if k else None for i, k in enumerate(ok)], pa.float32())
    columns["anomaly_score"] = pa.array([r.get("anomaly_score") for r in rows], pa.float32())
    columns["unusual"] = pa.array([r.get("unusual") for r in rows], pa.bool_())
    if predictor.tag_names:  # a model with tag heads: tag -> probability or predicted vote fraction
        columns["tags"] = pa.array(
            [None if r.get("tags") is None else list(r["tags"].items()) for r in rows],
            pa.map_(pa.string(), pa.float32()),
        )
    if options["embeddings"]:
        columns["embedding"] = pa.array(
            [None if r.get("embedding") is None else np.asarray(r["embedding"], np.float32) for r in rows],
            pa.list_(pa.float32()),
        )
    b = predictor.bundle
    columns["model"] = pa.array([b.name] * len(rows), pa.string())
    columns["model_version"] = pa.array([b.version] * len(rows), pa.string())
    columns["error"] = pa.array([r["error"] for r in rows], pa.string())
    return pa.table(columns)
