"""Stored records: retries, repeats, orphans, several models, TTA, corrections and the pages that show them."""

import json
import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from astroclassify.config import Settings
from astroclassify.web.app import create_app
from tests.conftest import distinct, run_cli
from tests.web.conftest import LOCAL, upload

PAGE = {"Accept": "text/html"}


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


@pytest.fixture
def client(home):
    settings = Settings(home=home, allowed_hosts=["testserver"])
    with TestClient(create_app(settings), client=LOCAL, raise_server_exceptions=False) as c:
        yield c


def test_idempotency_key_and_repeated_bytes_return_the_first_record(client, galaxy, home):
    first = upload(client, galaxy, headers={"Idempotency-Key": "retry-1"}).json()
    assert first["already_stored"] is False
    retried = upload(client, galaxy, "renamed.jpg", headers={"Idempotency-Key": "retry-1"}).json()
    assert retried["id"] == first["id"] and retried["already_stored"] is True
    clash = upload(client, distinct(galaxy, 1), headers={"Idempotency-Key": "retry-1"})
    assert clash.status_code == 422 and "different file" in clash.json()["error"]["message"]
    again = upload(client, galaxy, "same-bytes.jpg").json()  # no key, same bytes, model and TTA
    assert again["id"] == first["id"] and again["already_stored"] is True
    other_model = upload(client, galaxy, data={"model": "morphology"}).json()
    assert other_model["id"] != first["id"] and other_model["model"] == "morphology"
    assert client.get("/api/classifications").json()["total"] == 2
    assert len(list((home / "uploads").glob("*.jpg"))) == 2  # no file stored for the repeats


def test_orphan_files_are_swept_at_start_and_missing_files_hide_paths(home, galaxy):
    settings = Settings(home=home, allowed_hosts=["testserver"])
    with TestClient(create_app(settings), client=LOCAL) as c:
        record = upload(c, galaxy).json()
    uploads = home / "uploads"
    old_orphan = uploads / ("a" * 32 + ".jpg")
    new_orphan = uploads / ("b" * 32 + ".jpg")
    tmp_left = uploads / ".tmp-crashed"
    for path in (old_orphan, new_orphan, tmp_left):
        path.write_bytes(b"left by a crash")
    an_hour_ago = time.time() - 3600
    for path in (old_orphan, tmp_left):
        os.utime(path, (an_hour_ago, an_hour_ago))
    (stored,) = [p for p in uploads.glob("*.jpg") if p not in (old_orphan, new_orphan)]
    os.utime(stored, (an_hour_ago, an_hour_ago))
    with TestClient(create_app(settings), client=LOCAL, raise_server_exceptions=False) as c:
        assert not old_orphan.exists() and not tmp_left.exists()
        assert new_orphan.exists()  # may belong to a request still in flight in another process
        assert stored.exists()  # referenced by a record
        stored.unlink()
        for url in (
            f"/api/classifications/{record['id']}/explanation.png",
            f"/api/classifications/{record['id']}/image",
        ):
            missing = c.get(url)
            assert missing.status_code == 404
            assert str(home) not in missing.text and "no longer in the store" in missing.json()["error"]["message"]


def test_revoked_key_names_can_be_reused(tmp_path):
    env = {"ASTROCLASSIFY_HOME": str(tmp_path / "home")}
    assert run_cli("keys", "create", "alice", env=env).returncode == 0
    taken = run_cli("keys", "create", "alice", env=env)
    assert taken.returncode == 2 and "in use" in taken.stderr
    assert run_cli("keys", "revoke", "alice", env=env).returncode == 0
    again = run_cli("keys", "create", "alice", env=env)
    assert again.returncode == 0, again.stderr
    twice = run_cli("keys", "revoke", "alice", env=env)
    assert twice.returncode == 0
    gone = run_cli("keys", "revoke", "alice", env=env)
    assert gone.returncode == 2 and "already revoked" in gone.stderr
    listing = run_cli("keys", "list", env=env).stdout
    assert listing.count("alice") == 2


def test_every_model_is_served_and_chosen_per_request(client, galaxy, shared_data):
    models = client.get("/api/models").json()
    assert [m["name"] for m in models] == ["dso", "galaxy-type", "morphology"]
    assert [m["default"] for m in models] == [True, False, False]
    sdss = next((shared_data / "gz1-sdss/images").iterdir()).read_bytes()
    by_field = upload(client, sdss, data={"model": "morphology"}).json()
    by_query = client.post(
        "/api/classify", params={"model": "morphology"}, files={"image": ("q.jpg", distinct(sdss, "q"), "image/jpeg")}
    ).json()
    assert by_field["model"] == by_query["model"] == "morphology"
    assert set(by_field["probabilities"]) == {"dont_know", "edge_on", "elliptical", "merger", "spiral_acw", "spiral_cw"}
    default = upload(client, galaxy).json()
    assert default["model"] == "dso"
    explained = client.get(f"/api/classifications/{by_field['id']}/explanation.png", params={"label": "merger"})
    assert explained.status_code == 200  # explained by the model that answered, which knows "merger"
    unknown = upload(client, galaxy, data={"model": "nope"})
    assert (
        unknown.status_code == 404
        and "this server has: dso, galaxy-type, morphology" in unknown.json()["error"]["message"]
    )
    page = client.get("/models", headers=PAGE).text
    assert 'href="/models/dso"' in page and 'href="/models/morphology"' in page
    picker = client.get("/", headers=PAGE).text
    assert '<option value="morphology"' in picker and '<option value="dso" title' in picker


def test_web_and_cli_give_the_same_answer_and_say_how(client, galaxy, tmp_path):
    web = upload(client, galaxy, "m.jpg").json()
    assert web["tta"] == "rot4"  # the dso model's own mode, as the CLI uses
    image = tmp_path / "m.jpg"
    image.write_bytes(galaxy)
    cli = json.loads(run_cli("predict", str(image), "--json").stdout)
    assert cli["label"] == web["label"]
    for label, p in cli["probabilities"].items():
        assert abs(p - web["probabilities"][label]) < 1e-4
    detail = client.get(f"/classifications/{web['id']}", headers=PAGE).text
    assert "test-time augmentation <b>rot4</b>" in detail
    fast = TestClient(
        create_app(Settings(home=tmp_path / "fast", allowed_hosts=["testserver"], serve_tta="none")), client=LOCAL
    )
    with fast:
        assert upload(fast, galaxy).json()["tta"] == "none"


def test_a_saved_correction_shows_everywhere(client, galaxy):
    record = upload(client, galaxy, "m51.jpg").json()
    assert record["label"] == "galaxy"
    saved = client.post(
        f"/classifications/{record['id']}/feedback",
        data={"label": "nebula", "comment": "dusty"},
        headers={"Origin": "http://testserver"},
    )
    assert saved.status_code == 200 and "your correction is saved (nebula)" in saved.text
    page = saved.text
    assert '<h2 id="label" class="corrected">nebula <small>corrected</small></h2>' in page
    assert "the model said\n      <b>galaxy</b>" in page
    assert '<option value="nebula" selected>' in page  # the form shows the saved answer
    assert "<time>" in page.split('id="corrections"')[1]
    gallery = client.get("/gallery", headers=PAGE).text
    assert "✎ <b>nebula</b> (corrected)" in gallery
    assert "anomaly 0." in gallery or "anomaly 1.00" in gallery  # named: a bare 0.18 read like a confidence
    api = client.get(f"/api/classifications/{record['id']}").json()
    assert api["corrected_label"] == "nebula" and api["label"] == "galaxy"


def test_pages_for_people(client, galaxy):
    empty = client.get("/gallery", headers=PAGE).text
    assert '<p class="empty">Nothing yet: <a href="/">classify an image</a>.</p>' in empty
    assert '<a href="/gallery" aria-current="page">Gallery</a>' in empty
    missing = client.get("/no/such/page", headers=PAGE)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
    assert "<h1>Not found</h1>" in missing.text
    assert client.get("/no/such/page").json()["error"]["type"] == "HTTPError"  # scripts still get JSON
    assert client.get("/classifications/999", headers=PAGE).status_code == 404
    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    record = upload(client, galaxy).json()
    detail = client.get(f"/classifications/{record['id']}", headers=PAGE).text
    assert f'href="/api/classifications/{record["id"]}/image"' in detail
    assert 'class="cam-legend"' in detail
    full = client.get(f"/api/classifications/{record['id']}/image")
    assert full.content == galaxy and full.headers["content-type"] == "image/jpeg"
    assert full.headers["x-content-type-options"] == "nosniff"
    for path in ("/docs", "/redoc"):
        page = client.get(path).text
        assert "cdn." not in page and "/static/apidocs/" in page
    assert client.get("/static/apidocs/redoc.standalone.js").status_code == 200
    # The ReDoc bundle draws its vendor's logo from cdn.redoc.ly: the page forbids images from elsewhere.
    assert "img-src 'self' data:" in client.get("/redoc").headers["content-security-policy"]


def test_archive_urls_are_never_live_links_unless_http(client, home):
    """A failed item recorded by an older release with a ``javascript:`` page URL is shown as text."""
    from astroclassify.store.archive import IngestedItems
    from astroclassify.store.db import make_engine, make_sessionmaker
    from astroclassify.store.tables import IngestedItem

    engine = make_engine(f"sqlite:///{home / 'astroclassify.db'}")
    with make_sessionmaker(engine)() as session:
        items = IngestedItems(session)
        items.save(IngestedItem(key="apod:2024-01-06", source="apod", status="failed", title="Evil",
                                page_url="javascript:alert(document.cookie)//ap240106.html", error="HTTP 404"))  # fmt: skip
        items.save(IngestedItem(key="apod:2024-01-05", source="apod", status="failed", title="Fine",
                                page_url="https://apod.nasa.gov/apod/ap240105.html", error="HTTP 500"))  # fmt: skip
    engine.dispose()
    page = client.get("/ingest", headers=PAGE).text
    assert 'href="javascript:' not in page
    assert "javascript:alert(document.cookie)//ap240106.html" in page  # shown, escaped, as text
    assert 'href="https://apod.nasa.gov/apod/ap240105.html"' in page


def test_correcting_an_image_the_model_trained_on_says_it_goes_to_review(client, shared_data):
    """Such a correction was 'nothing new' to learn, and the page said nothing of it."""
    from astroclassify.modelfolder.folder import load_bundle
    from astroclassify.preparation.splits import read_splits

    row = next(r for r in read_splits(load_bundle("dso").path / "splits.csv") if r.split == "train")
    data = (shared_data / row.key).read_bytes()
    record = upload(client, data, Path(row.key).name).json()
    other = "nebula" if row.label == "galaxy" else "galaxy"
    page = client.get(f"/classifications/{record['id']}")
    assert 'id="contradicts"' not in page.text  # no correction yet
    client.post(f"/api/classifications/{record['id']}/feedback", json={"label": other})
    page = client.get(f"/classifications/{record['id']}")
    assert 'id="contradicts"' in page.text and f"trained dso as <b>{row.label}</b>" in page.text
    assert "/models/dso/review" in page.text
