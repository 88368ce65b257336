"""The command line as a user meets it: usage mistakes, --version, narrow terminals, skipped files."""

import csv
import os

import pytest

from astroclassify._version import __version__
from tests.conftest import run_cli


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["predcit"], "No such command 'predcit'"),
        (["predict"], "Missing argument"),
        (["predict", "--bogus", "x.jpg"], "No such option: --bogus"),
        (["train", "--data", "x"], "Missing option '--out'"),
        (["evaluate", "--model", "dso", "--data", "d", "--split"], "requires an argument"),
    ],
)
def test_usage_mistakes_exit_2_with_typers_message(args, needle):
    res = run_cli(*args)
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr
    assert "internal error" not in res.stderr and "Traceback" not in res.stderr


def test_version():
    res = run_cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"astroclassify {__version__}"


def _gz1_paths(shared_data, n=3):
    images = sorted((shared_data / "gz1-sdss/images").iterdir())[:n]
    return images


def test_predict_table_fits_80_columns_without_cutting_labels(shared_data, tmp_path):
    folder = tmp_path / "deep" / "folder" / "with a long name"
    folder.mkdir(parents=True)
    for src in _gz1_paths(shared_data, 4):
        (folder / src.name).write_bytes(src.read_bytes())
    res = run_cli("predict", str(folder), "--model", "morphology", env={"COLUMNS": "80"})
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), res.stdout
    assert "tags not shown at this width: use --json or a wider terminal" in lines  # not dropped silently
    rows = [line for line in lines[1:] if "unusual (!)" not in line and "tags not shown" not in line]
    assert len(rows) == 4  # one line per image: no path wrapped over several lines
    assert "…" not in res.stdout
    labels = {"dont_know", "edge_on", "elliptical", "merger", "spiral_acw", "spiral_cw"}
    for row in rows:
        cells = row.split()
        assert cells[0].endswith(".jpg") and "/" not in cells[0]  # the name inside the folder
        assert cells[1] in labels and cells[3] in labels  # label and runner-up, both whole
        assert 0 <= float(cells[5]) <= 1  # the anomaly score has its own column
    assert lines[0].split()[-1] == "anomaly"
    wide = run_cli("predict", str(folder), "--model", "morphology", env={"COLUMNS": "140"})
    header = wide.stdout.splitlines()[0].split()
    assert header[3:] == [*sorted(labels), "anomaly"]  # a column per class where they fit


def test_predict_folder_reports_skipped_files(shared_data, tmp_path):
    src = _gz1_paths(shared_data, 1)[0]
    (tmp_path / "galaxy.dat").write_bytes(src.read_bytes())  # an image whatever its name
    (tmp_path / "notes.txt").write_text("observing log")
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    res = run_cli("predict", str(tmp_path), "--json")
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.splitlines()) == 1 and '"galaxy.dat"' not in res.stdout
    assert "skipped 2 file(s)" in res.stderr
    assert "not an image by its content" in res.stderr and "hidden file" in res.stderr


def test_evaluate_with_nothing_to_score_is_one_line(shared_data, tmp_path):
    unknown = tmp_path / "unknown" / "comet"
    unknown.mkdir(parents=True)
    for src in _gz1_paths(shared_data, 2):
        (unknown / src.name).write_bytes(src.read_bytes())
    res = run_cli("evaluate", "--model", "dso", "--data", str(tmp_path / "unknown"))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith("error: nothing to score") and "comet" in lines[-1]
    assert "internal error" not in res.stderr

    # Every image in the model's own training split: --split auto scores none of them.
    splits = {r["sha256"]: r["split"] for r in _rows(_bundled("morphology") / "splits.csv")}
    manifest = _rows(shared_data / "gz1-sdss/manifest.csv")
    trained = [r for r in manifest if splits.get(r["sha256"]) == "train" and r["label"] == "elliptical"][:3]
    seen = tmp_path / "seen"
    (seen / "elliptical").mkdir(parents=True)
    for r in trained:
        (seen / "elliptical" / os.path.basename(r["file"])).write_bytes(
            (shared_data / "gz1-sdss" / r["file"]).read_bytes()
        )
    res = run_cli("evaluate", "--model", "morphology", "--data", str(seen), "--json")
    assert res.returncode == 2, res.stderr
    assert "3 image(s) excluded by --split auto (3 in its train split)" in res.stderr


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _bundled(name):
    from astroclassify.modelfolder.folder import load_bundle

    return load_bundle(name).path


def test_help_shows_placeholders_users_read_not_python_types():
    """typer 0.27+ printed `--json <bool>`, `inputs... <list[Path]>` and `Usage: ... {inputs}...`."""
    res = run_cli("predict", "--help", env={"COLUMNS": "100"})
    assert res.returncode == 0, res.stderr
    assert "INPUTS..." in res.stdout and "{" not in res.stdout
    assert "<bool>" not in res.stdout and "<list" not in res.stdout and "<str>" not in res.stdout
    assert "Images per ONNX Runtime run" in res.stdout  # --batch-size had no help
