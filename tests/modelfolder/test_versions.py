"""Model versions: immutable folders named by content, a pointer to the one served, use and rollback."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from astroclassify.cli import app
from astroclassify.errors import ConfigError, ModelError, UnknownNameError
from astroclassify.inference.pool import PredictorPool
from astroclassify.modelfolder.folder import (
    bundled_folder,
    load_bundle,
    model_versions,
    resolve_bundle,
    rollback_model,
    use_model_version,
)
from astroclassify.modelfolder.versions import adopt, content_id, draft

DSO = bundled_folder("dso")


def _write(home: Path, note: str, *, bundled: Path | None = None) -> str:
    """A new version: the bundled dso model with ``note`` in its model.json."""
    with draft(home, made_by="test", bundled=bundled, info={"scores": {"note": note}}) as d:
        shutil.copytree(DSO, d.path, dirs_exist_ok=True)
        meta = json.loads((d.path / "model.json").read_text())
        (d.path / "model.json").write_text(json.dumps(meta | {"note": note}))
    assert d.version is not None
    return d.version


@pytest.fixture
def models_dir(tmp_path) -> Path:
    return tmp_path / "models"


def test_each_write_is_a_new_version_named_by_content_and_served_by_pointer(models_dir):
    home = models_dir / "mine"
    a = _write(home, "a")
    assert len(a) == 12 and a == content_id(home / "versions" / a)
    assert _write(home, "a") == a  # the same content is the same version, not a second one
    b = _write(home, "b")
    assert b != a and resolve_bundle("mine", models_dir=models_dir) == home / "versions" / b
    bundle = load_bundle("mine", models_dir=models_dir)
    assert (bundle.name, bundle.version) == ("mine", b)  # records and batch outputs name this version
    info = json.loads((home / "versions" / b / "VERSION.json").read_text())
    assert info["parent"] == a and info["made_by"] == "test" and info["scores"] == {"note": "b"}
    assert load_bundle(f"mine@{a[:6]}", models_dir=models_dir).meta["note"] == "a"  # a prefix will do
    rows = model_versions("mine", models_dir=models_dir)
    assert [(r.version, r.current) for r in rows] == [(a, False), (b, True)]


def test_use_and_rollback_move_only_the_pointer(models_dir):
    home = models_dir / "mine"
    a, b = _write(home, "a"), _write(home, "b")
    before = sorted(p.name for p in (home / "versions").iterdir())
    assert use_model_version(f"mine@{a}", models_dir=models_dir).version == a
    assert load_bundle("mine", models_dir=models_dir).version == a
    assert rollback_model("mine", models_dir=models_dir).version == b  # undoes the `use`
    assert rollback_model("mine", models_dir=models_dir).version == a  # then what b replaced
    with pytest.raises(ConfigError, match="no earlier version to roll back to"):
        rollback_model("mine", models_dir=models_dir)
    assert sorted(p.name for p in (home / "versions").iterdir()) == before  # nothing deleted
    with pytest.raises(UnknownNameError, match="version 'ffff' of mine does not exist"):
        use_model_version("mine@ffff", models_dir=models_dir)
    with pytest.raises(ConfigError, match="NAME@VERSION"):
        use_model_version("mine", models_dir=models_dir)


def test_a_bundled_name_starts_at_version_1_and_rolls_back_to_it(models_dir):
    assert load_bundle("dso", models_dir=models_dir).version == "1"
    mine = _write(models_dir / "dso", "retrained", bundled=DSO)
    assert load_bundle("dso", models_dir=models_dir).version == mine
    rows = model_versions("dso", models_dir=models_dir)
    assert [(r.version, r.current) for r in rows] == [("1", False), (mine, True)]
    assert rows[1].parent == "1"
    assert rollback_model("dso", models_dir=models_dir).version == "1"
    assert resolve_bundle("dso", models_dir=models_dir) == DSO


def test_a_failed_write_leaves_the_served_version_and_no_debris(models_dir):
    home = models_dir / "mine"
    a = _write(home, "a")
    with pytest.raises(RuntimeError), draft(home, made_by="test", from_current=True) as d:
        (d.path / "model.json").write_text("{}")
        raise RuntimeError("training died")
    with pytest.raises(ModelError, match="no model.json and model.onnx"), draft(home, made_by="test"):
        pass
    assert load_bundle("mine", models_dir=models_dir).version == a
    assert sorted(p.name for p in home.iterdir()) == ["pointer.json", "versions"]


def test_a_folder_from_before_versions_becomes_its_own_first_version(tmp_path):
    old = tmp_path / "old"
    shutil.copytree(DSO, old)
    (old / "checkpoint.pt").write_bytes(b"training state")
    first = adopt(old)
    assert first is not None and resolve_bundle(old) == old / "versions" / first
    assert (old / "checkpoint.pt").is_file() and not (old / "model.json").exists()
    assert load_bundle(old).meta["labels"] == load_bundle(DSO).meta["labels"]


def test_a_server_pool_answers_with_the_version_served_now(models_dir):
    home = models_dir / "mine"
    a, b = _write(home, "a"), _write(home, "b")
    pool = PredictorPool("mine", models_dir=models_dir)
    assert pool.get().bundle.version == b
    use_model_version(f"mine@{a}", models_dir=models_dir)
    assert pool.get().bundle.version == a and pool.get("mine") is pool.get()  # loaded once
    rollback_model("mine", models_dir=models_dir)
    assert pool.get().bundle.version == b


def test_models_command_lists_uses_and_rolls_back(models_dir, monkeypatch):
    monkeypatch.setenv("ASTROCLASSIFY_HOME", str(models_dir.parent))
    monkeypatch.setenv("COLUMNS", "200")
    home = models_dir / "mine"
    a, b = _write(home, "a"), _write(home, "b")
    runner = CliRunner()
    listed = runner.invoke(app, ["models"])
    assert listed.exit_code == 0, listed.output
    assert f"* {b}" in listed.output and f"  {a}" in listed.output and "dso" in listed.output
    used = runner.invoke(app, ["models", "use", f"mine@{a[:5]}"])
    assert used.exit_code == 0 and f"mine now serves version {a}" in used.output
    back = runner.invoke(app, ["models", "rollback", "mine"])
    assert back.exit_code == 0 and f"mine rolled back to version {b}" in back.output
    assert os.path.samefile(resolve_bundle("mine", models_dir=models_dir), home / "versions" / b)
