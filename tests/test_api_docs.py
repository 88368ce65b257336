"""docs/api.md's examples, run in order as one session (as a notebook would run them)."""

import os
import re
from pathlib import Path

import pytest

from astroclassify.ingestion import apod
from tests.conftest import ROOT
from tests.ingestion.archive_site import ArchiveSite


@pytest.mark.slow
def test_every_api_example_runs(shared_data, tmp_path, monkeypatch, capsys):
    text = (ROOT / "docs" / "api.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 5
    site = ArchiveSite(shared_data / "apod")
    url = site.start()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(apod, "BASE_URL", f"{url}/apod/")  # APOD, served locally
    monkeypatch.setattr(apod, "MIRRORS", ())
    monkeypatch.setenv("ASTROCLASSIFY_INGEST_MIN_INTERVAL", "0")
    monkeypatch.setenv("ASTROCLASSIFY_DATA_DIR", str(shared_data))
    namespace: dict = {}
    try:
        for i, block in enumerate(blocks):
            # The archive, served locally, at the pace a local server allows.
            code = block.replace("min_interval=1.0", "min_interval=0")
            exec(compile(code, f"docs/api.md block {i + 1}", "exec"), namespace)
    finally:
        site.stop()
    printed = capsys.readouterr().out
    assert (
        "('galaxy', 'nebula', 'planet', 'star_cluster')" in printed
        and "Evaluation(dso on hubble-dso (auto split): n=75" in printed
    )
    assert "TrainResult(tiny at runs/tiny" in printed and "CVResult(3 folds" in printed
    assert "EnsembleResult(tiny-ens" in printed and "IngestResult(apod:" in printed
    assert Path("m51-gradcam.png").is_file() and Path("reports/report-hubble-dso-auto.html").is_file()
    assert namespace["cv"].path.is_file() and Path("apod-dataset/manifest.csv").is_file()
    assert " train False" in printed and " cv True" in printed
    assert "AnomalyFit(detectors/nebulae" in printed and "AnomalyEvaluation(n_in=" in printed
    assert "Simulation(9 marks in 3 rounds" in printed and "1 marked image(s) exported" in printed
    assert Path("marks-dataset/manifest.csv").is_file()
    assert os.environ["ASTROCLASSIFY_HOME"] not in str(Path.cwd())
