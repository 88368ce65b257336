"""A core install (no CLI, web, batch, discovery or training libraries): one line naming the extra, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Each missing library is made unimportable in a fresh interpreter, as if never installed.
BLOCK = "import sys\nfor m in {mods!r}: sys.modules[m] = None\n"


def _run(code: str, *missing: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCK.format(mods=list(missing)) + code], capture_output=True, text=True, timeout=120
    )


def test_the_core_predicts_and_explains_without_any_extra(shared_data):
    extras = ["torch", "sqlalchemy", "typer", "rich", "fastapi", "dask", "distributed", "pyarrow", "sklearn"]
    extras += ["scipy", "matplotlib", "jinja2", "httpx", "bs4", "hnswlib", "skimage", "yaml", "uvicorn", "onnx"]
    image = shared_data / "hubble-dso/galaxy/heic0506a.jpg"
    run = _run(
        "import astroclassify\n"
        f"clf = astroclassify.load('dso')\nprint(clf.predict({str(image)!r})[0].label)\n"
        f"print(clf.explain({str(image)!r}).label)\n",
        *extras,
    )
    assert run.returncode == 0, run.stderr[-1500:]
    assert run.stdout.split() == ["galaxy", "galaxy"]


@pytest.mark.parametrize(
    ("code", "missing", "extra"),
    [
        ("astroclassify.train", "torch", "train"),
        ("astroclassify.Classifier().fit(['a.jpg'], ['x'])", "torch", "train"),
        ("astroclassify.open_store('home')", "sqlalchemy", "store"),
        ("astroclassify.batch(['.'], 'out')", "fsspec", "batch"),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(code, missing, extra, tmp_path):
    run = _run(
        f"import astroclassify\ntry:\n    {code}\nexcept astroclassify.MissingExtraError as e:\n    print(e)\n",
        missing,
    )
    assert run.returncode == 0, run.stderr[-1500:]
    assert f"from the '{extra}' extra: pip install 'astroclassify[{extra}]'" in run.stdout


def test_the_command_without_its_extra_says_which(tmp_path):
    run = _run("from astroclassify.console_script import main\nsys.argv = ['astroclassify', '--help']\nmain()", "typer")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip() == (
        "error: this needs typer, from the 'cli' extra: pip install 'astroclassify[cli]' "
        "(or 'astroclassify[all]' for everything)"
    )
