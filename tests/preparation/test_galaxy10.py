"""Galaxy10's HDF5 layout: fetched and converted to a dataset folder, read a block at a time."""

import json

import numpy as np
import pytest

from astroclassify.errors import IngestError
from astroclassify.preparation.collections import fetch
from astroclassify.preparation.dataset import load_dataset
from astroclassify.preparation.galaxy10 import GALAXY10
from tests.conftest import make_sky, run_cli


def write_galaxy10(path, n=40, size=256):
    """A small file of the Galaxy10 DECaLS layout: images, ans, ra, dec (rows 0 and 1: one galaxy twice)."""
    import h5py

    rng = np.random.default_rng(0)
    images = np.stack([np.asarray(_sky(i, size)) for i in range(n)])
    ans = np.array([2 if i % 2 else 5 for i in range(n)], np.uint8)  # round smooth / barred spiral
    ra, dec = rng.uniform(0, 360, n), rng.uniform(-20, 60, n)
    ra[1], dec[1] = ra[0], dec[0]
    with h5py.File(path, "w") as f:
        f["images"], f["ans"], f["ra"], f["dec"] = images, ans, ra, dec
    return path


def _sky(i, size):
    from PIL import Image

    return Image.fromarray(make_sky("galaxy" if i % 2 else "nebula", 64, seed=i)).resize((size, size))


def test_a_local_h5_becomes_a_dataset_folder_grouped_by_position(tmp_path):
    h5 = write_galaxy10(tmp_path / "g10.h5")
    count = fetch(h5, tmp_path / "galaxy10")
    ds = load_dataset(tmp_path / "galaxy10")
    assert count == 40 and len(ds.samples) == 40 and not ds.problems
    assert ds.class_counts() == {"barred_spiral": 20, "round_smooth": 20}
    first, second = (s for s in ds.samples if s.meta["row"] in ("0", "1"))
    assert first.meta["group"] == second.meta["group"]  # one galaxy listed twice: one group
    assert len({s.meta["group"] for s in ds.samples}) == 39


def test_a_file_by_a_published_name_must_have_the_published_checksum(tmp_path):
    h5 = write_galaxy10(tmp_path / "Galaxy10_DECals.h5", n=4)
    with pytest.raises(IngestError, match="is not the published 19aefc477c41"):
        fetch(h5, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written
    assert GALAXY10["galaxy10-decals"].url.endswith("/Galaxy10_DECals.h5")


def test_not_the_layout_is_a_clear_error(tmp_path):
    import h5py

    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["pixels"] = np.zeros((2, 8, 8), np.uint8)
    res = run_cli("data", "fetch", str(tmp_path / "other.h5"), "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "holds `images` and `ans` arrays; found ['pixels']" in res.stderr
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    res = run_cli("data", "fetch", str(tmp_path / "junk.h5"), "--out", str(tmp_path / "o"))
    assert res.returncode == 2 and "not a readable HDF5 file" in res.stderr


def test_the_seed_trains_and_evaluates_from_the_converted_file(tmp_path):
    """`train --data <galaxy10>` with the seed's architecture, then `evaluate` with its confusion matrix."""
    write_galaxy10(tmp_path / "g10.h5", n=60)
    assert run_cli("data", "fetch", str(tmp_path / "g10.h5"), "--out", str(tmp_path / "g10")).returncode == 0
    trained = run_cli(
        "train", "--data", str(tmp_path / "g10"), "--out", str(tmp_path / "m"), "--model", "squeezenet1_1",
        "--image-size", "48", "--epochs", "1", "--set", "pretrained=false", "--set", "batch_size=16", "--quiet",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    ev = run_cli("evaluate", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "g10"), "--json")
    metrics = json.loads(ev.stdout)
    assert metrics["split"] == "auto" and 0 < metrics["n"] < 60  # its held-out test rows only
    assert metrics["confusion_matrix"]["labels"] == ["barred_spiral", "round_smooth"]
    table = run_cli("evaluate", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "g10"))
    assert "barred_spiral" in table.stdout and "round_smooth" in table.stdout
