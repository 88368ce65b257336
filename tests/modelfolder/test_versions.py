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


def test_a_version_id_is_an_id_never_a_path(models_dir, tmp_path):
    from fastapi.testclient import TestClient

    from astroclassify.config import Settings
    from astroclassify.modelfolder.folder import available_models, broken_models
    from astroclassify.web.app import create_app
    from tests.web.conftest import LOCAL

    home = models_dir / "mine"
    a = _write(home, "a")
    outside = _write(tmp_path / "elsewhere", "outside")
    escape = f"../../../{tmp_path.name}/elsewhere/versions/{outside}"
    for ref in (f"dso@{escape}", f"mine@{escape}", "mine@*", "mine@../versions/" + a):
        with pytest.raises(UnknownNameError, match="is not a version id"):
            resolve_bundle(ref, models_dir=models_dir)
    with pytest.raises(UnknownNameError, match="is not a version id"):
        use_model_version(f"mine@{escape}", models_dir=models_dir)
    assert json.loads((home / "pointer.json").read_text())["current"] == a  # nothing written

    # A pointer that names a path, or a version that is gone: that model is broken, the others serve.
    (home / "pointer.json").write_text(json.dumps({"current": escape, "served": [escape]}))
    with pytest.raises(ModelError, match="not a version id"):
        resolve_bundle("mine", models_dir=models_dir)
    gone = models_dir / "gone"
    _write(gone, "g")
    (gone / "pointer.json").write_text(json.dumps({"current": "abcdef123456", "served": ["abcdef123456"]}))
    assert set(broken_models(models_dir)) == {"mine", "gone"}
    assert {e.name for e in available_models(models_dir)} >= {"dso", "morphology"}
    settings = Settings(home=models_dir.parent, allowed_hosts=["testserver"])  # models_dir is home/models
    with TestClient(create_app(settings), client=LOCAL) as client:  # starts although two models are broken
        health = client.get("/health").json()
        assert health["status"] == "degraded" and set(health["broken"]) == {"mine", "gone"}
        assert client.get("/api/models").status_code == 200
    listed = CliRunner().invoke(app, ["models"], env={"ASTROCLASSIFY_HOME": str(models_dir.parent), "COLUMNS": "400"})
    assert listed.exit_code == 0 and "broken, not served" in listed.output


def test_the_pointer_keeps_the_homes_mode_a_bounded_history_and_no_temporary_files(models_dir):
    import time

    home = models_dir / "mine"
    a, b = _write(home, "a"), _write(home, "b")
    os.chmod(home, 0o755)
    stale = home / ".pointer-leftover"
    stale.write_text("{}")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))  # left by a writer killed an hour ago
    for _ in range(80):
        use_model_version(f"mine@{a}", models_dir=models_dir)
        use_model_version(f"mine@{b}", models_dir=models_dir)
    pointer = json.loads((home / "pointer.json").read_text())
    assert len(pointer["served"]) == 100 and pointer["current"] == b
    assert oct((home / "pointer.json").stat().st_mode & 0o777) == oct(0o644)
    assert not list(home.glob(".pointer-*"))


def test_rolling_back_a_bundled_model_says_which_version_it_serves(tmp_path):
    """`models` marks the bundled version served; rollback said "served: none" of the same model."""
    from astroclassify.modelfolder.folder import rollback_model

    with pytest.raises(ConfigError, match="dso serves version 1 and has no earlier version to roll back to"):
        rollback_model("dso", models_dir=tmp_path / "models")


def test_a_challenger_written_but_not_served_leaves_the_bundled_model_serving(models_dir, monkeypatch):
    """A refused challenger (draft with serve=False) in a fresh home: every reader still sees version 1."""
    with draft(models_dir / "dso", made_by="learn-head", bundled=DSO, serve=False) as d:
        shutil.copytree(DSO, d.path, dirs_exist_ok=True)
        (d.path / "note.txt").write_text("challenger")
    assert d.version is not None and not (models_dir / "dso" / "pointer.json").exists()
    assert resolve_bundle("dso", models_dir=models_dir) == DSO
    assert load_bundle("dso", models_dir=models_dir).version == "1"
    rows = model_versions("dso", models_dir=models_dir)
    assert [(r.version, r.current) for r in rows] == [("1", True), (d.version, False)]
    pool = PredictorPool("dso", models_dir=models_dir)
    assert pool.get().bundle.path == DSO and not pool.broken()
    with pytest.raises(ConfigError, match="serves version 1 and has no earlier"):
        rollback_model("dso", models_dir=models_dir)
    assert use_model_version("dso@1", models_dir=models_dir).current  # agrees with what is served
    assert use_model_version(f"dso@{d.version}", models_dir=models_dir).current
    assert resolve_bundle("dso", models_dir=models_dir) == models_dir / "dso" / "versions" / d.version
    assert rollback_model("dso", models_dir=models_dir).version == "1"


def test_a_draft_whose_writer_died_is_swept_and_a_live_one_is_not(models_dir, tmp_path):
    """kill -9 mid-write leaves a .draft-* folder; the next write removes it, never a live writer's."""
    import subprocess
    import sys
    import time

    from astroclassify.modelfolder.versions import sweep_dead_drafts

    home = models_dir / "mine"
    _write(home, "a")
    script = (
        "import sys, time, pathlib\n"
        "from astroclassify.modelfolder.versions import draft\n"
        "with draft(pathlib.Path(sys.argv[1]), made_by='x') as d:\n"
        "    (d.path / 'big.bin').write_bytes(b'0' * 100000)\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
    )
    with subprocess.Popen([sys.executable, "-c", script, str(home)], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            (live,) = home.glob(".draft-*")
            old = time.time() - 3600
            os.utime(live, (old, old))
            assert sweep_dead_drafts(home) == [] and live.is_dir()  # its writer holds it
        finally:
            proc.kill()
    assert live.is_dir()  # killed: nothing cleaned up after it
    assert sweep_dead_drafts(home) == [live] and not live.exists()
    young = home / ".draft-young"
    young.mkdir()
    assert sweep_dead_drafts(home) == [] and young.is_dir()  # between mkdtemp and its lock: left alone
    _write(home, "b")


def test_a_broken_default_model_does_not_stop_the_others_serving(models_dir):
    """A pointer damaged by hand: the pool starts, the default answers with why, /health names it."""
    from fastapi.testclient import TestClient

    from astroclassify.config import Settings
    from astroclassify.web.app import create_app

    _write(models_dir / "dso", "mine", bundled=DSO)
    (models_dir / "dso" / "pointer.json").write_text("{not json")
    pool = PredictorPool("dso", models_dir=models_dir)
    assert "dso" in pool.broken() and pool.get("morphology").bundle.name == "morphology"
    with pytest.raises(ModelError, match="pointer.json is unreadable"):
        pool.get()
    from tests.web.conftest import LOCAL

    settings = Settings(home=models_dir.parent, allowed_hosts=["testserver"])
    with TestClient(create_app(settings), client=LOCAL) as client:
        health = client.get("/health").json()
        assert health["status"] == "degraded" and "dso" in health["broken"]
        png = (Path(__file__).parents[2] / "examples" / "heic0506a.jpg").read_bytes()
        other = client.post("/api/classify?model=morphology", files={"image": ("m51.jpg", png, "image/jpeg")})
        assert other.status_code == 200, other.text
        broken = client.post("/api/classify", files={"image": ("m51.jpg", png, "image/jpeg")})
        assert broken.status_code == 503 and "pointer.json" in broken.text
