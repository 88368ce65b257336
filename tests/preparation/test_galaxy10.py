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


def test_data_kept_in_other_files_is_refused(tmp_path):
    """External raw storage, external links and virtual datasets read other files (/etc/shadow's bytes)."""
    import h5py

    from astroclassify.errors import DataError
    from astroclassify.preparation.galaxy10 import h5_to_dataset

    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"root:$6$hash" * 1000)
    other = write_galaxy10(tmp_path / "other.h5", n=2, size=8)
    cases = {}
    with h5py.File(tmp_path / "external.h5", "w") as f:
        f.create_dataset("images", (2, 8, 8, 3), np.uint8, external=[(str(secret), 0, 384)])
        f["ans"] = np.zeros(2, np.uint8)
    cases["external.h5"] = "keeps its data in other files"
    with h5py.File(tmp_path / "link.h5", "w") as f:
        f["images"] = h5py.ExternalLink(str(other), "/images")
        f["ans"] = np.zeros(2, np.uint8)
    cases["link.h5"] = "a link to another place"
    with h5py.File(tmp_path / "virtual.h5", "w") as f:
        layout = h5py.VirtualLayout((2, 8, 8, 3), np.uint8)
        layout[:] = h5py.VirtualSource(str(other), "images", shape=(2, 8, 8, 3))
        f.create_virtual_dataset("images", layout)
        f["ans"] = np.zeros(2, np.uint8)
    cases["virtual.h5"] = "keeps its data in other files"
    for name, says in cases.items():
        with pytest.raises(DataError, match=says):
            h5_to_dataset(tmp_path / name, tmp_path / f"out-{name}")
        assert not list((tmp_path / f"out-{name}").rglob("*.png"))


def test_rows_pixels_and_output_are_counted_before_anything_is_written(tmp_path):
    """A 1.6 KB file declaring 10^8 rows wrote 76,800 images until the disk filled; 4 Mpx rows took 3.2 GB."""
    import h5py

    from astroclassify.errors import DataError
    from astroclassify.preparation.galaxy10 import h5_to_dataset

    with h5py.File(tmp_path / "many.h5", "w") as f:
        f.create_dataset("images", (10**8, 8, 8, 3), np.uint8, chunks=(1, 8, 8, 3))
        f.create_dataset("ans", (10**8,), np.uint8, chunks=(1024,))
    assert (tmp_path / "many.h5").stat().st_size < 10_000
    with pytest.raises(DataError, match="100,000,000 rows of 8 x 8 px; a Galaxy10 file may have up to 100,000 rows"):
        h5_to_dataset(tmp_path / "many.h5", tmp_path / "many")
    with h5py.File(tmp_path / "huge.h5", "w") as f:
        f.create_dataset("images", (4, 2048, 2048, 3), np.uint8, chunks=(1, 256, 256, 3))
        f.create_dataset("ans", (4,), np.uint8)
    with pytest.raises(DataError, match="of 1024 px"):
        h5_to_dataset(tmp_path / "huge.h5", tmp_path / "huge")
    assert not list(tmp_path.glob("many/**/*.png")) and not list(tmp_path.glob("huge/**/*.png"))


def test_labels_and_positions_that_are_not_numbers_are_clear(tmp_path):
    """NaN or string labels and a string `ra` were internal errors."""
    import h5py

    from astroclassify.errors import DataError
    from astroclassify.preparation.galaxy10 import h5_to_dataset

    images = np.zeros((3, 8, 8, 3), np.uint8)
    with h5py.File(tmp_path / "nan.h5", "w") as f:
        f["images"], f["ans"] = images, np.array([2.0, np.nan, 5.0])
        f["ra"], f["dec"] = np.array([b"x", b"y", b"z"]), np.zeros(3)
    assert h5_to_dataset(tmp_path / "nan.h5", tmp_path / "nan") == 2  # the NaN row left out, no positions
    ds = load_dataset(tmp_path / "nan")
    assert ds.class_counts() == {"class_2": 1, "class_5": 1} and "group" not in ds.samples[0].meta
    with h5py.File(tmp_path / "str.h5", "w") as f:
        f["images"], f["ans"] = images, np.array([b"spiral", b"x", b"y"])
    with pytest.raises(DataError, match="`ans` must hold integer labels"):
        h5_to_dataset(tmp_path / "str.h5", tmp_path / "str")
