"""The REST API and pages in-process: the app `uvicorn --factory astroclassify.web.app:create_app` serves."""

import io
import json

import numpy as np
import pytest

from tests.conftest import distinct, fits_cube_bytes, jpeg_bytes, make_sky, run_cli
from tests.web.conftest import LOCAL


def _png_bomb() -> bytes:
    from tests.imaging.test_decode import _png_header_only

    return _png_header_only(20000, 20000)


PNG_BOMB = _png_bomb()


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from fastapi.testclient import TestClient

    from astroclassify.config import Settings
    from astroclassify.web.app import create_app

    settings = Settings(home=tmp_path_factory.mktemp("api-home"), allowed_hosts=["testserver"])
    with TestClient(create_app(settings), client=LOCAL) as client:
        yield client


def test_pages_and_health(api):
    assert api.get("/health").json() == {"status": "ok", "model": "dso"}
    page = api.get("/")
    assert page.status_code == 200 and 'id="drop"' in page.text and "Predict" in page.text
    assert "curl -F image=@" in api.get("/documentation").text
    assert api.get("/static/app.js").status_code == 200
    assert "/api/classify" in api.get("/openapi.json").json()["paths"]


def test_the_openapi_description_lists_predict_and_takes_an_api_key(api):
    """Swagger UI had no Authorize button for keys and did not list /predict."""
    schema = api.get("/openapi.json").json()
    assert "/predict" in schema["paths"] and "post" in schema["paths"]["/predict"]
    scheme = schema["components"]["securitySchemes"]["APIKey"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "X-API-Key")
    assert {"APIKey": []} in schema["security"]


def test_classify_real_image(api, shared_data):
    path = shared_data / "hubble-dso/galaxy/heic0506a.jpg"
    for route in ("/api/classify", "/predict"):
        res = api.post(f"{route}", files={"image": (path.name, path.read_bytes(), "image/jpeg")})
        assert res.status_code == 200, res.text
        body = res.json()
        assert body["label"] in ("galaxy", "nebula", "planet", "star_cluster") and body["model"] == "dso"
        assert abs(sum(body["probabilities"].values()) - 1) < 1e-4
    info = api.get("/api/models").json()[0]
    assert info["labels"] == ["galaxy", "nebula", "planet", "star_cluster"]


@pytest.mark.parametrize(
    ("name", "payload", "status", "needle"),
    [
        ("notes.jpg", b"just some text", 422, "not a recognised image"),
        ("cut.jpg", jpeg_bytes(make_sky("galaxy", 400))[:600], 422, "truncated"),
        ("empty.png", b"", 422, "empty"),
        ("huge.jpg", b"\xff\xd8" + b"0" * 50_000_000, 413, "over the 20 MiB limit"),
        ("bomb.png", PNG_BOMB, 422, "decompression bomb"),
    ],
)
def test_bad_uploads_get_clear_json_errors(api, name, payload, status, needle):
    res = api.post("/api/classify", files={"image": (name, payload, "image/jpeg")})
    assert res.status_code == status
    assert needle in res.json()["error"]["message"]


def test_wrong_field_and_empty_body_are_422(api):
    res = api.post("/api/classify", files={"file": ("a.jpg", b"x", "image/jpeg")})
    assert res.status_code == 422 and res.json()["error"]["message"].startswith("body.image")
    for body, headers in (
        (b"", {}),
        (b"", {"Content-Type": "multipart/form-data; boundary=x"}),
        (b"{}", {"Content-Type": "application/json"}),
    ):
        empty = api.post("/api/classify", content=body, headers=headers)
        assert empty.status_code == 422, (headers, empty.text)
        assert set(empty.json()["error"]) >= {"type", "message"}


def test_classifications_are_stored_browsable_and_correctable(api, shared_data):
    path = shared_data / "hubble-dso/nebula" / sorted(p.name for p in (shared_data / "hubble-dso/nebula").iterdir())[0]
    evil = "<script>alert(1)</script>.jpg"
    res = api.post("/api/classify", files={"image": (evil, path.read_bytes(), "image/jpeg")})
    assert res.status_code == 200, res.text
    record = res.json()
    assert isinstance(record["id"], int) and record["file"] == evil  # stored verbatim; pages must escape it
    got = api.get(f"/api/classifications/{record['id']}").json()
    assert got["label"] == record["label"] and got["feedback"] == []
    fb = api.post(f"/api/classifications/{record['id']}/feedback", json={"label": "nebula", "comment": "ok"})
    assert fb.status_code == 200 and fb.json()["feedback"][0]["label"] == "nebula"
    listing = api.get("/api/classifications", params={"label": record["label"], "per_page": 200}).json()
    assert record["id"] in [item["id"] for item in listing["items"]]
    assert api.get("/api/classifications/999999").status_code == 404
    assert api.post(f"/api/classifications/{record['id']}/feedback", json={"label": ""}).status_code == 422
    assert api.get("/api/classifications", params={"sort": "random"}).status_code == 422


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_batch_of_files_and_zip_with_per_file_errors(api, shared_data):
    good = sorted((shared_data / "nasa-planets-galaxies/planet").iterdir())[:2]
    files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in good]
    files.append(("images", ("notes.jpg", b"plain text", "image/jpeg")))
    res = api.post("/api/classify/batch", files=files)
    assert res.status_code == 200, res.text
    body = res.json()
    assert (body["classified"], body["failed"]) == (2, 1)
    assert [i["file"] for i in body["items"]] == [good[0].name, good[1].name, "notes.jpg"]
    assert "not a recognised image" in body["items"][2]["error"]
    assert all(isinstance(i["result"]["id"], int) for i in body["items"][:2])

    archive = _zip_bytes(
        {
            "a/one.jpg": good[0].read_bytes(),
            "../../evil.jpg": good[1].read_bytes(),
            "cut.jpg": good[1].read_bytes()[:300],
        }
    )
    res = api.post("/api/classify/batch", files={"images": ("set.zip", archive, "application/zip")})
    body = res.json()
    by_name = {i["file"]: i for i in body["items"]}
    assert by_name["a/one.jpg"]["result"]["label"] in ("galaxy", "nebula", "planet", "star_cluster")
    assert "unsafe file name" in by_name["../../evil.jpg"]["error"]
    assert "truncated or corrupt" in by_name["cut.jpg"]["error"]
    assert (body["classified"], body["failed"]) == (1, 2)


def test_gallery_detail_feedback_form_and_model_page(api, shared_data):
    path = shared_data / "hubble-dso/galaxy/heic0506a.jpg"
    name = "<img src=x onerror=alert(1)>.jpg"
    data = distinct(path.read_bytes(), "gallery")
    rec = api.post("/api/classify", files={"image": (name, data, "image/jpeg")}).json()
    gallery = api.get("/gallery", params={"label": rec["label"], "sort": "newest"})
    assert gallery.status_code == 200
    assert f'href="/classifications/{rec["id"]}"' in gallery.text
    assert "<img src=x onerror" not in gallery.text and "&lt;img src=x onerror=alert(1)&gt;.jpg" in gallery.text
    thumb = api.get(f"/thumbs/{rec['id']}.jpg")
    assert (
        thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg" and thumb.content[:2] == b"\xff\xd8"
    )
    detail = api.get(f"/classifications/{rec['id']}")
    assert detail.status_code == 200 and 'id="feedback"' in detail.text
    saved = api.post(
        f"/classifications/{rec['id']}/feedback",
        data={"label": "nebula", "comment": "<b>dust</b>"},
        headers={"Origin": "http://testserver"},  # as a browser sends with a form post
        follow_redirects=True,
    )
    assert saved.status_code == 200 and "your correction is saved" in saved.text
    assert "&lt;b&gt;dust&lt;/b&gt;" in saved.text
    assert api.get(f"/api/classifications/{rec['id']}").json()["feedback"][-1]["label"] == "nebula"
    assert api.get("/classifications/999999").status_code == 404
    model = api.get("/models/dso")
    assert model.status_code == 200 and "Held-out test metrics" in model.text and "astroclassify train" in model.text
    assert api.get("/models/dso/plots/reliability.png").headers["content-type"] == "image/png"
    assert api.get("/models/dso/plots/..%2Fmodel.json").status_code == 404


def test_feedback_exports_as_a_valid_dataset(api, shared_data, tmp_path):
    import io
    import zipfile

    path = (
        shared_data
        / "nasa-planets-galaxies/planet"
        / sorted(p.name for p in (shared_data / "nasa-planets-galaxies/planet").iterdir())[0]
    )
    rec = api.post("/api/classify", files={"image": ("p.jpg", path.read_bytes(), "image/jpeg")}).json()
    api.post(f"/api/classifications/{rec['id']}/feedback", json={"label": "planet", "comment": "Saturn"})
    res = api.get("/api/feedback/export")
    assert res.status_code == 200 and res.headers["content-type"] == "application/zip"
    zipfile.ZipFile(io.BytesIO(res.content)).extractall(tmp_path)
    check = run_cli("data", "check", str(tmp_path / "feedback"), "--json")
    assert check.returncode == 0, check.stderr  # checksums verified against the stored sha256
    report = json.loads(check.stdout)
    assert report["ok"] and report["n"] == int(res.headers["X-Images"]) >= 1
    manifest = (tmp_path / "feedback" / "manifest.csv").read_text()
    assert "Saturn" in manifest and f",{rec['id']}," in manifest


def test_explanation_png_per_record_and_label(api, shared_data):
    from PIL import Image

    path = shared_data / "hubble-dso/galaxy/heic0506a.jpg"
    data = distinct(path.read_bytes(), "explanation")
    rec = api.post("/api/classify", files={"image": (path.name, data, "image/jpeg")}).json()
    assert rec["explanation_url"] == f"/api/classifications/{rec['id']}/explanation.png"
    assert rec["credit"] == {
        "archive": "ESA/Hubble",
        "id": "heic0506a",
        "text": "ESA/Hubble & NASA",
        "url": "https://esahubble.org/images/heic0506a/",
        "license": "CC BY 4.0",
    }
    assert rec["low_confidence"] is (rec["confidence"] < 0.6)
    assert 0 <= rec["anomaly_score"] < 0.95 and rec["unusual"] is False  # a typical Hubble galaxy
    first = api.get(rec["explanation_url"])
    assert first.status_code == 200 and first.headers["content-type"] == "image/png"
    with Image.open(path) as original, Image.open(io.BytesIO(first.content)) as overlay:
        assert overlay.format == "PNG" and overlay.size == original.size  # 500x345: drawn at full size
    again = api.get(rec["explanation_url"])
    assert again.content == first.content  # rendered once, then served from disk
    other = api.get(rec["explanation_url"], params={"label": "planet"})
    assert other.status_code == 200 and other.content != first.content
    bad = api.get(rec["explanation_url"], params={"label": "comet"})
    assert bad.status_code == 422 and "not one of model 'dso''s classes" in bad.json()["error"]["message"]
    assert api.get("/api/classifications/999999/explanation.png").status_code == 404
    assert api.get("/api/models").json()[0]["explainable"] is True


def test_renamed_files_get_no_guessed_credit(api, shared_data):
    data = distinct((shared_data / "hubble-dso/galaxy/heic0506a.jpg").read_bytes(), "renamed")
    rec = api.post("/api/classify", files={"image": ("my-photo.jpg", data, "image/jpeg")}).json()
    assert rec["credit"] is None


def test_fits_upload_is_classified_and_previewed_with_its_models_stretch(api, shared_data):
    """A 3-plane FITS cube of a JPEG: the same answer as the JPEG, and a JPEG preview of it."""
    from PIL import Image

    # A galaxy the model is sure of: a borderline one (potw1520a, 0.56 galaxy) may flip between the
    # draft-decoded JPEG and the cube read whole, which says nothing about FITS handling.
    jpeg = shared_data / "hubble-dso/galaxy/heic0506a.jpg"
    cube = fits_cube_bytes(np.asarray(Image.open(jpeg).convert("RGB")))
    from_jpeg = api.post("/api/classify", files={"image": ("g.jpg", jpeg.read_bytes(), "image/jpeg")}).json()
    from_fits = api.post("/api/classify", files={"image": ("g.fits", cube, "image/fits")}).json()
    assert from_fits["label"] == from_jpeg["label"]
    # The JPEG is draft-decoded (DCT scaling, as the model was trained); the cube is read whole.
    assert abs(from_fits["confidence"] - from_jpeg["confidence"]) < 0.08
    thumb = api.get(f"/thumbs/{from_fits['id']}.jpg")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    preview = np.asarray(Image.open(io.BytesIO(thumb.content)).convert("RGB")).astype(float)
    small = np.asarray(Image.open(jpeg).convert("RGB").resize(Image.open(io.BytesIO(thumb.content)).size)).astype(float)
    assert np.abs(preview - small).mean() < 12  # the picture itself, the right way up, not re-stretched
    before = api.post("/api/preview", files={"image": ("g.fits", cube, "image/fits")})
    assert before.status_code == 200 and before.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(before.content)).size) == 320
    # morphology sees the central 40%: the preview outlines that box (96..224 of 320 px), nothing else drawn.
    gz = fits_cube_bytes(np.asarray(Image.open(next((shared_data / "gz1-sdss/images").glob("*.jpg"))).convert("RGB")))
    boxed = api.post("/api/preview", params={"model": "morphology"}, files={"image": ("gz.fits", gz, "image/fits")})
    drawn = np.asarray(Image.open(io.BytesIO(boxed.content)).convert("L")).astype(float)
    assert drawn.shape == (320, 320) and drawn[96, 110:210].min() > 200 and drawn[20, 20:300].max() < 120
    listed = api.get("/api/classifications").json()["items"]
    assert len([i for i in listed if i["file"] == "g.fits"]) == 1  # a preview stores nothing
    bad = api.post("/api/preview", files={"image": ("x.fits", b"SIMPLE  = broken", "image/fits")})
    assert bad.status_code == 422 and "x.fits" in bad.json()["error"]["message"]  # as classify answers


def test_a_zip_listing_too_many_entries_is_refused_from_its_end_record(api):
    from tests.files.test_zipdir import directory_only_zip

    listing = directory_only_zip(1_000_000, zip64=True)  # 47 MB of directory, under the batch byte limit
    res = api.post("/api/classify/batch", files={"images": ("many.zip", listing, "application/zip")})
    assert res.status_code == 413, res.text
    assert "lists 1000000 entries" in res.json()["error"]["message"]


def test_an_unknown_query_parameter_is_an_error_not_ignored(api):
    """`?page_size=` on a route that reads `per_page` used to be ignored: the default page came back."""
    reply = api.get("/api/classifications", params={"page_size": 5})
    assert reply.status_code == 422
    assert "unknown query parameter(s): page_size" in reply.text and "per_page" in reply.text
    assert api.get("/api/classifications", params={"per_page": 5}).status_code == 200
    assert api.get("/api/models").status_code == 200  # no parameters at all: still fine


def test_swagger_names_each_classify_endpoint_apart_and_links_back_to_the_site(api):
    spec = api.get("/openapi.json").json()
    summaries = [spec["paths"][p]["post"]["summary"] for p in ("/api/classify", "/predict", "/api/classify/batch")]
    assert len(set(summaries)) == 3  # both used to read "Classify"
    assert "[Back to the site](/)" in spec["info"]["description"]
