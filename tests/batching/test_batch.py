"""``batch`` on a real local Dask cluster: Parquet out, errors as rows, resumable, exactly once."""

import json
import subprocess
import sys

import pyarrow.dataset as pads
import pytest

from astroclassify.batching.batch import batch, list_inputs
from astroclassify.errors import ConfigError, DataError
from tests.conftest import fits_cube_bytes, run_cli


@pytest.fixture(scope="module")
def inputs(shared_data, tmp_path_factory):
    """30 real images in two folders, one as FITS too, one broken file, and a CSV manifest naming 5 of them."""
    root = tmp_path_factory.mktemp("batch-in")
    files = (
        sorted((shared_data / "hubble-dso/galaxy").glob("*.jpg"))[:20]
        + sorted((shared_data / "nasa-planets-galaxies/planet").glob("*.jpg"))[:10]
    )
    for i, f in enumerate(files):
        (root / f"d{i % 2}").mkdir(exist_ok=True)
        (root / f"d{i % 2}" / f"{i:03d}-{f.name}").write_bytes(f.read_bytes())
    (root / "d0" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    import numpy as np
    from PIL import Image

    (root / "d1" / "cube.fits").write_bytes(fits_cube_bytes(np.asarray(Image.open(files[1]).convert("RGB"))))
    names = sorted(p.relative_to(root) for p in root.rglob("*.jpg"))[:5]
    (root / "list.csv").write_text("path,note\n" + "".join(f"{n},x\n" for n in names))
    return root


def cube_source_name(root):
    return next((root / "d1").glob("001-*.jpg")).name.removeprefix("001-")


def read(out):
    return pads.dataset(str(out), format="parquet").to_table().to_pylist()


def test_inputs_come_from_folders_globs_and_manifests(inputs, tmp_path):
    assert len(list_inputs(inputs)) == 33  # list.csv too: a file in a folder that is not an image gets its row
    assert len(list_inputs(str(inputs / "d1" / "*.jpg"))) == 15
    assert len(list_inputs(inputs / "list.csv")) == 5
    with pytest.raises(DataError, match="matches no file"):
        list_inputs(str(inputs / "*.png"))
    (tmp_path / "bad.csv").write_text("image\nx.jpg\n")  # not in the shared folder: it would become an input
    with pytest.raises(DataError, match="needs a column named one of path"):
        list_inputs(tmp_path / "bad.csv")


def test_batch_writes_every_input_once_and_resumes(inputs, tmp_path):
    out = tmp_path / "results"
    result = batch(inputs, out, model="dso", workers=2, partition_size=8, tta="none")
    assert (result.images, result.partitions, result.errors, result.workers) == (33, 5, 2, 2)  # broken.jpg, list.csv
    rows = read(out)
    assert sorted(r["path"] for r in rows) == list_inputs(inputs)  # each exactly once
    broken = next(r for r in rows if r["path"].endswith("broken.jpg"))
    assert broken["label"] is None and "truncated or corrupt" in broken["error"]
    good = [r for r in rows if r["error"] is None]
    assert all(r["label"] in ("galaxy", "nebula", "planet", "star_cluster") and r["model"] == "dso" for r in good)
    assert all(
        0 <= r["anomaly_score"] <= 1 and abs(sum(v for k, v in r.items() if k.startswith("p_")) - 1) < 1e-4
        for r in good
    )
    assert sum(r["label"] == "planet" for r in good) >= 9
    cube = next(r for r in rows if r["path"].endswith("cube.fits"))
    jpeg = next(r for r in rows if r["path"].endswith("001-" + cube_source_name(inputs)))
    assert cube["label"] == jpeg["label"] and abs(cube["p_galaxy"] - jpeg["p_galaxy"]) < 0.05  # FITS reads as its JPEG

    # A run killed after some partitions: remove one, leave a half-written file; re-run.
    (out / "part-00002.parquet").unlink()
    (out / "_tmp-00002-999.parquet").write_bytes(b"half")
    again = batch(inputs, out, model="dso", workers=1, partition_size=8, tta="none")
    assert (again.skipped_partitions, again.images, again.errors) == (4, 33, 2)
    assert sorted(r["path"] for r in read(out)) == list_inputs(inputs)
    assert not list(out.glob("_tmp-*"))

    with pytest.raises(ConfigError, match="holds a batch run with other partition_size"):
        batch(inputs, out, model="dso", workers=1, partition_size=16, tta="none")


def test_batch_command_with_embeddings_and_a_manifest(inputs, tmp_path):
    out = tmp_path / "cli"
    res = run_cli(
        "batch", str(inputs / "list.csv"), "--out", str(out), "--workers", "1", "--embeddings", "--tta", "none"
    )
    assert res.returncode in (0, 1), res.stderr
    assert "5 images in 3 partitions" in res.stdout  # about 4 partitions per worker: ceil(5 / 4) files each
    rows = read(out)
    assert len(rows) == 5 and all(len(r["embedding"]) == 65 for r in rows if r["error"] is None)
    settings = json.loads((out / "_batch.json").read_text())
    assert settings["n_inputs"] == 5 and settings["embeddings"] is True


def test_a_bad_tta_is_refused_before_the_run_is_claimed(inputs, tmp_path):
    """`batch DIR --out O --tta bogus` wrote its claim first, so the corrected re-run into O was refused."""
    out = tmp_path / "o"
    bad = run_cli("batch", str(inputs / "list.csv"), "--out", str(out), "--workers", "1", "--tta", "bogus")
    assert bad.returncode == 2 and "unknown test-time augmentation 'bogus'" in bad.stderr
    assert not (out / "_batch.json").exists()
    with pytest.raises(ConfigError, match="unknown test-time augmentation"):
        batch(inputs / "list.csv", out, model="dso", workers=1, tta="rot5")
    good = run_cli("batch", str(inputs / "list.csv"), "--out", str(out), "--workers", "1", "--tta", "none")
    assert good.returncode in (0, 1), good.stderr
    assert json.loads((out / "_batch.json").read_text())["tta"] == "none"


def test_urls_in_a_manifest_are_read_by_the_workers_and_a_dead_link_is_one_row(inputs, tmp_path):
    """http:// from a real server on 127.0.0.1 and file:// URLs; a 404 is that file's error."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(inputs / "d0"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        names = sorted(p.name for p in (inputs / "d0").glob("0*.jpg"))[:3]
        urls = [f"{base}/{n}" for n in names] + [f"{base}/missing.jpg", (inputs / "d1" / "cube.fits").as_uri()]
        (tmp_path / "urls.csv").write_text("url\n" + "\n".join(urls) + "\n")
        result = batch(tmp_path / "urls.csv", tmp_path / "out", model="dso", workers=1, tta="none")
    finally:
        server.shutdown()
        server.server_close()
    rows = {r["path"]: r for r in read(tmp_path / "out")}
    assert (result.images, result.errors) == (5, 1) and sorted(rows) == sorted(urls)
    assert "HTTP 404" in rows[f"{base}/missing.jpg"]["error"]
    classes = ("galaxy", "nebula", "planet", "star_cluster")
    assert all(rows[u]["label"] in classes and rows[u]["error"] is None for u in urls if "missing" not in u)


def test_a_model_retrained_in_place_is_not_mixed_into_its_earlier_answers(inputs, tmp_path):
    import json
    import shutil

    from astroclassify.modelfolder.folder import load_bundle, resolve_bundle

    model = tmp_path / "model"
    shutil.copytree(resolve_bundle("dso"), model)
    out = tmp_path / "results"
    first = batch(sorted(list_inputs(inputs))[:3], out, model=str(model), workers=1, partition_size=8, tta="none")
    assert first.images == 3 and {r["model_version"] for r in read(out)} == {load_bundle(model).version}
    meta = json.loads((model / "model.json").read_text())
    meta["version"] = "209901010000"  # `train --out model` again, at the same path
    (model / "model.json").write_text(json.dumps(meta))
    with pytest.raises(
        ConfigError, match=r"holds answers of model .* version .*; this run's model .* is version 209901010000"
    ):
        batch(sorted(list_inputs(inputs))[:3], out, model=str(model), workers=1, partition_size=8, tta="none")


def test_reading_written_partitions_never_aborts_the_process_at_exit(tmp_path):
    """A re-run reads the finished partitions' errors; Arrow's thread pools then aborted about
    one process in ten at exit (exit 134, "terminate called without an active exception")."""
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa
    import pyarrow.parquet as pq

    for p in range(8):
        errors = pa.array([None] * 60 + ["broken"] * (p % 3), pa.string())
        pq.write_table(pa.table({"path": pa.array([f"{p}-{i}" for i in range(len(errors))]), "error": errors}),
                       tmp_path / f"part-{p:05d}.parquet")  # fmt: skip
    code = (
        "import fsspec; from astroclassify.batching.batch import _errors_in; "
        f"print(_errors_in(fsspec.filesystem('file'), {str(tmp_path)!r}, list(range(8))))"
    )

    def run(_: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(run, range(24)))
    assert [r.returncode for r in runs] == [0] * 24, next(r.stderr for r in runs if r.returncode)
    assert {r.stdout.strip() for r in runs} == {str(sum(p % 3 for p in range(8)))}


def test_batch_runs_from_a_script_without_a_main_guard_and_from_stdin(shared_data, tmp_path, monkeypatch):
    """Dask's worker processes run ``__main__``'s file again: such callers get threads, not a traceback."""
    import types

    from astroclassify.batching.batch import worker_processes_can_start

    def main_module(**attrs):
        module = types.ModuleType("__main__")
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, "__main__", module)

    guarded, bare = tmp_path / "guarded.py", tmp_path / "bare.py"
    guarded.write_text('if __name__ == "__main__":\n    pass\n')
    bare.write_text("import astroclassify\n")
    for attrs, expected in (
        ({}, True),  # a notebook, python -c
        ({"__file__": str(guarded)}, True),
        ({"__file__": str(bare)}, False),
        ({"__file__": "<stdin>"}, False),  # python -
    ):
        main_module(**attrs)
        assert worker_processes_can_start() is expected, attrs
    monkeypatch.undo()

    images = sorted((shared_data / "hubble-dso" / "galaxy").glob("*.jpg"))[:3]
    script = tmp_path / "classify.py"
    script.write_text(
        f"import astroclassify\nprint(astroclassify.batch({[str(p) for p in images]!r}, 'out', workers=2))\n"
    )
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "3 images" in run.stdout, run.stderr[-2000:]
    assert "Traceback" not in run.stderr and "using threads in this process" in run.stderr


def test_partitions_are_sized_from_the_inputs_and_workers_and_a_rerun_says_it_had_nothing_to_do(shared_data, tmp_path):
    """202 files on 2 workers were one partition of 512 (one worker worked); a non-image vanished."""
    from astroclassify.batching.batch import auto_partition_size

    assert (
        auto_partition_size(202, 2) == 26 and auto_partition_size(10_000, 2) == 512 and auto_partition_size(3, 4) == 1
    )
    folder = tmp_path / "in"
    folder.mkdir()
    for path in sorted((shared_data / "hubble-dso/galaxy").glob("*.jpg"))[:6]:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "notes.txt").write_text("not an image")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    first = batch(folder, tmp_path / "out", model="dso", workers=1, tta="none")
    assert (first.images, first.partitions) == (7, 4)  # ceil(7 / 4) = 2 files a partition
    rows = read(tmp_path / "out")
    (bad,) = [r for r in rows if r["error"]]
    assert bad["path"].endswith("notes.txt") and "not" in bad["error"] and first.errors == 1
    again = batch(folder, tmp_path / "out", model="dso", workers=2, tta="none")  # other workers: same partitions
    assert repr(again).endswith("all written by an earlier run, nothing to do)")
    assert "0.0 images/s" not in repr(again) and "1 partitions" not in repr(again)
