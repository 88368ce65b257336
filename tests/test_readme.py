"""The README's examples, run as written from the repository root (issue 21: its first example failed).

Every ``astroclassify ...`` line of a ``bash`` block runs, except the few listed in ``SKIP``
with the reason (they need the internet, a cluster, or minutes of training; other tests run
them against local stand-ins). Every ``python`` block runs, in one interpreter, except
blocks that train.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# First words of a command -> why this test does not run it.
SKIP = {
    "train": "minutes of training; tests/training run train on small data",
    "train-encoder": "hours of training; tests/training/test_multitask.py runs it on small data",
    "card": "needs the model the skipped train line writes",
    "serve": "serves until stopped; tests/web start it",
    "ingest": "needs the internet; tests/ingestion run it against a local archive",
    "watch": "needs the internet and runs until stopped; tests/ingestion run it",
    "batch catalogue.parquet": "needs a Dask scheduler at tcp://head:8786; tests/batching run batch locally",
    "export": "quantizes on training images (a minute); tests/training/test_quantize.py runs it",
    "anomalies evaluate --model runs/mine": "needs the model the skipped train line writes",
    "anomalies fit --model runs/mine": "needs the model the skipped train line writes",
    "similar": "needs stored records; tests/web/test_discovery.py runs it",
    "learn dso --max-minutes": "trains a challenger when there are new labels; tests/learning run the loop",
    "learn dso --import": "names the reader's own labelled folder; tests/learning import one",
    "models rollback": "needs a promotion to undo; tests/learning roll one back",
    "sync": "needs a peer installation; tests/sharing/test_sync.py runs three on loopback",
    "labels import": "names the reader's own collection; tests/sharing/test_exchange.py imports one",
}


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def _commands() -> list[list[str]]:
    commands = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            if not line.startswith("astroclassify "):
                continue
            words = shlex.split(line, comments=True)[1:]
            if not any(" ".join(words).startswith(prefix) for prefix in SKIP):
                commands.append(words)
    return commands


def test_the_readme_examples_name_files_that_ship():
    assert (ROOT / "examples/spiral-galaxy.jpg").is_file()
    text = README.read_text()
    assert "m51.jpg" not in text and "odd.jpg" not in text  # names no file a fresh clone lacks
    assert len(_commands()) >= 8


@pytest.mark.parametrize("words", _commands(), ids=lambda w: " ".join(w)[:60])
def test_readme_command_runs_as_written(words, shared_data, monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    env = {"ASTROCLASSIFY_DATA_DIR": str(shared_data)}
    if words[0] == "explain":  # writes its overlay here: keep the checkout clean
        words = [*words, "--out", str(tmp_path / "overlay.png")]
    if words[0] == "batch":
        words = [w if not w.startswith("results") else str(tmp_path / "results") for w in words]
    if words[:2] == ["labels", "export"]:  # writes a folder: not into the checkout
        words = [w if not w.startswith("shared-labels") else str(tmp_path / "shared-labels") for w in words]
    result = run_cli(*words, env=env)
    assert result.returncode == 0, f"astroclassify {shlex.join(words)}: {result.stderr[-500:]}"
    assert "Traceback" not in result.stderr


def test_readme_python_runs_as_written(shared_data, tmp_path):
    code = "\n".join(b for b in _blocks("python") if "train(" not in b and "batch(" not in b)
    assert "astroclassify.load" in code
    env = os.environ | {"ASTROCLASSIFY_DATA_DIR": str(shared_data), "ASTROCLASSIFY_HOME": str(tmp_path / "home")}
    (tmp_path / "examples").symlink_to(ROOT / "examples")  # relative paths as from the checkout; reports land here
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-800:]
