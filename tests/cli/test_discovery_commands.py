"""``similar``, ``anomalies mark`` and ``anomalies export`` on a store filled through the web app."""

import csv
import json

from fastapi.testclient import TestClient

from astroclassify.config import Settings
from astroclassify.web.app import create_app
from tests.conftest import run_cli
from tests.web.conftest import LOCAL, upload


def test_similar_mark_and_export_from_the_command_line(tmp_path, shared_data):
    home = tmp_path / "home"
    files = (
        sorted((shared_data / "hubble-dso/galaxy").glob("*.jpg"))[:4]
        + sorted((shared_data / "nasa-planets-galaxies/planet").glob("*.jpg"))[:2]
    )
    with TestClient(create_app(Settings(home=home, allowed_hosts=["testserver"])), client=LOCAL) as client:
        ids = [upload(client, p.read_bytes(), p.name).json()["id"] for p in files]
        fixed = client.post(f"/api/classifications/{ids[1]}/feedback", json={"label": "star_cluster"})
        assert fixed.status_code == 200, fixed.text
    env = {"ASTROCLASSIFY_HOME": str(home)}

    by_record = run_cli("similar", f"#{ids[0]}", "--k", "3", "--json", env=env)
    assert by_record.returncode == 0, by_record.stderr
    result = json.loads(by_record.stdout)
    assert result["query"] == f"#{ids[0]}" and len(result["hits"]) == 3
    assert ids[0] not in [h["id"] for h in result["hits"]]
    everyone = json.loads(run_cli("similar", f"#{ids[0]}", "--k", "5", "--json", env=env).stdout)["hits"]
    assert {h["id"]: h["corrected"] for h in everyone}[ids[1]] == "star_cluster"  # a person's word, beside the model's
    shown = run_cli("similar", f"#{ids[0]}", "--k", "5", env=env).stdout
    assert "star_cluster" in shown and "(corrected;" in shown  # the table wraps the cell: both parts shown
    by_file = json.loads(run_cli("similar", str(files[-1]), "--k", "1", "--json", env=env).stdout)
    assert by_file["hits"][0]["id"] == ids[-1] and by_file["hits"][0]["distance"] < 1e-2  # itself, stored

    assert run_cli("anomalies", "mark", str(ids[1]), "--interesting", env=env).returncode == 0
    assert run_cli("anomalies", "mark", str(ids[2]), "--boring", env=env).returncode == 0
    missing = run_cli("anomalies", "mark", "999", "--boring", env=env)
    assert missing.returncode == 2 and "classification 999 not found" in missing.stderr
    exported = run_cli("anomalies", "export", str(tmp_path / "marks"), env=env)
    assert exported.returncode == 0 and "2 marked image(s)" in exported.stdout
    with (tmp_path / "marks" / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["label"] for r in rows) == ["boring", "interesting"]
    assert all(r["marked_by"] == "local" and r["marked_at"] for r in rows)
    again = run_cli("anomalies", "export", str(tmp_path / "marks"), env=env)
    assert again.returncode == 2 and "already holds a dataset" in again.stderr


def test_similar_with_nothing_stored_says_so(shared_data, tmp_path):
    """An empty table with no word was all a new installation got."""
    res = run_cli(
        "similar", str(shared_data / "hubble-dso/galaxy/heic0506a.jpg"), env={"ASTROCLASSIFY_HOME": str(tmp_path)}
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "no stored images to compare with yet: classify or ingest some first"
