import csv
import hashlib

from astroclassify.config import get_settings
from astroclassify.store.classifications import Classifications
from astroclassify.store.db import make_engine, make_sessionmaker
from astroclassify.store.images import save_image
from astroclassify.store.tables import Classification
from tests.conftest import jpeg_bytes, make_sky, run_cli


def test_cli_exports_only_corrected_images(tmp_path):
    settings = get_settings()  # ASTROCLASSIFY_HOME is a fresh folder (autouse fixture)
    engine = make_engine(settings.resolved_database_url)
    with make_sessionmaker(engine)() as s:
        repo = Classifications(s)
        ids = []
        for i in range(3):
            data = jpeg_bytes(make_sky("galaxy", seed=i))
            stored = save_image(data, "JPEG", settings.home / "uploads")
            row = Classification(
                filename=f"g{i}.jpg",
                stored_name=stored,
                sha256=hashlib.sha256(data).hexdigest(),
                image_format="JPEG",
                label="galaxy",
                confidence=0.6,
                probabilities={"galaxy": 0.6},
                model_name="dso",
                model_version="1",
            )
            ids.append(repo.add(row).id)
        repo.add_feedback(ids[1], "nebula", "filaments")
    engine.dispose()
    res = run_cli("feedback", "export", "--out", str(tmp_path / "fb"))
    assert res.returncode == 0, res.stderr
    assert "1 corrected image(s)" in res.stdout
    with (tmp_path / "fb" / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["label"], r["predicted"], r["original_name"]) for r in rows] == [("nebula", "galaxy", "g1.jpg")]
    assert run_cli("data", "check", str(tmp_path / "fb")).returncode == 0
    again = run_cli("feedback", "export", "--out", str(tmp_path / "fb"))
    assert again.returncode == 2 and "not empty" in again.stderr
