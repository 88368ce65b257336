"""`astroclassify serve` over real HTTP on 127.0.0.1."""

import io
import json

import httpx
import pytest

from tests.conftest import distinct, jpeg_bytes, make_sky, run_cli
from tests.web.conftest import serve_process


def _png_bomb() -> bytes:
    from tests.imaging.test_decode import _png_header_only

    return _png_header_only(20000, 20000)


PNG_BOMB = _png_bomb()


@pytest.fixture(scope="module")
def server():
    with serve_process() as base:
        yield base


def test_pages_and_health(server):
    assert httpx.get(f"{server}/health").json() == {"status": "ok", "model": "dso"}
    page = httpx.get(f"{server}/")
    assert page.status_code == 200 and 'id="drop"' in page.text and "Predict" in page.text
    assert "curl -F image=@" in httpx.get(f"{server}/documentation").text
    assert httpx.get(f"{server}/static/app.js").status_code == 200
    assert "/api/classify" in httpx.get(f"{server}/openapi.json").json()["paths"]


def test_classify_real_image(server, shared_data):
    path = shared_data / "hubble-dso/galaxy/heic0007b.jpg"
    for route in ("/api/classify", "/predict"):
        res = httpx.post(f"{server}{route}", files={"image": (path.name, path.read_bytes(), "image/jpeg")})
        assert res.status_code == 200, res.text
        body = res.json()
        assert body["label"] in ("galaxy", "nebula", "planet") and body["model"] == "dso"
        assert abs(sum(body["probabilities"].values()) - 1) < 1e-4
    info = httpx.get(f"{server}/api/models").json()[0]
    assert info["labels"] == ["galaxy", "nebula", "planet"]


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
def test_bad_uploads_get_clear_json_errors(server, name, payload, status, needle):
    res = httpx.post(f"{server}/api/classify", files={"image": (name, payload, "image/jpeg")})
    assert res.status_code == status
    assert needle in res.json()["error"]["message"]


def test_wrong_field_and_empty_body_are_422(server):
    res = httpx.post(f"{server}/api/classify", files={"file": ("a.jpg", b"x", "image/jpeg")})
    assert res.status_code == 422 and res.json()["error"]["message"].startswith("body.image")
    for body, headers in (
        (b"", {}),
        (b"", {"Content-Type": "multipart/form-data; boundary=x"}),
        (b"{}", {"Content-Type": "application/json"}),
    ):
        empty = httpx.post(f"{server}/api/classify", content=body, headers=headers)
        assert empty.status_code == 422, (headers, empty.text)
        assert set(empty.json()["error"]) >= {"type", "message"}


def test_classifications_are_stored_browsable_and_correctable(server, shared_data):
    path = shared_data / "hubble-dso/nebula" / sorted(p.name for p in (shared_data / "hubble-dso/nebula").iterdir())[0]
    evil = "<script>alert(1)</script>.jpg"
    res = httpx.post(f"{server}/api/classify", files={"image": (evil, path.read_bytes(), "image/jpeg")})
    assert res.status_code == 200, res.text
    record = res.json()
    assert isinstance(record["id"], int) and record["file"] == evil  # stored verbatim; pages must escape it
    got = httpx.get(f"{server}/api/classifications/{record['id']}").json()
    assert got["label"] == record["label"] and got["feedback"] == []
    fb = httpx.post(f"{server}/api/classifications/{record['id']}/feedback", json={"label": "nebula", "comment": "ok"})
    assert fb.status_code == 200 and fb.json()["feedback"][0]["label"] == "nebula"
    listing = httpx.get(f"{server}/api/classifications", params={"label": record["label"], "per_page": 200}).json()
    assert record["id"] in [item["id"] for item in listing["items"]]
    assert httpx.get(f"{server}/api/classifications/999999").status_code == 404
    assert httpx.post(f"{server}/api/classifications/{record['id']}/feedback", json={"label": ""}).status_code == 422
    assert httpx.get(f"{server}/api/classifications", params={"sort": "random"}).status_code == 422


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_batch_of_files_and_zip_with_per_file_errors(server, shared_data):
    good = sorted((shared_data / "nasa-planets-galaxies/planet").iterdir())[:2]
    files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in good]
    files.append(("images", ("notes.jpg", b"plain text", "image/jpeg")))
    res = httpx.post(f"{server}/api/classify/batch", files=files, timeout=60)
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
    res = httpx.post(
        f"{server}/api/classify/batch", files={"images": ("set.zip", archive, "application/zip")}, timeout=60
    )
    body = res.json()
    by_name = {i["file"]: i for i in body["items"]}
    assert by_name["a/one.jpg"]["result"]["label"] in ("galaxy", "nebula", "planet")
    assert "unsafe file name" in by_name["../../evil.jpg"]["error"]
    assert "truncated or corrupt" in by_name["cut.jpg"]["error"]
    assert (body["classified"], body["failed"]) == (1, 2)


def test_gallery_detail_feedback_form_and_model_page(server, shared_data):
    path = shared_data / "hubble-dso/galaxy/heic0007b.jpg"
    name = "<img src=x onerror=alert(1)>.jpg"
    data = distinct(path.read_bytes(), "gallery")
    rec = httpx.post(f"{server}/api/classify", files={"image": (name, data, "image/jpeg")}).json()
    gallery = httpx.get(f"{server}/gallery", params={"label": rec["label"], "sort": "newest"})
    assert gallery.status_code == 200
    assert f'href="/classifications/{rec["id"]}"' in gallery.text
    assert "<img src=x onerror" not in gallery.text and "&lt;img src=x onerror=alert(1)&gt;.jpg" in gallery.text
    thumb = httpx.get(f"{server}/thumbs/{rec['id']}.jpg")
    assert (
        thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg" and thumb.content[:2] == b"\xff\xd8"
    )
    detail = httpx.get(f"{server}/classifications/{rec['id']}")
    assert detail.status_code == 200 and 'id="feedback"' in detail.text
    saved = httpx.post(
        f"{server}/classifications/{rec['id']}/feedback",
        data={"label": "nebula", "comment": "<b>dust</b>"},
        headers={"Origin": server},  # as a browser sends with a form post
        follow_redirects=True,
    )
    assert saved.status_code == 200 and "your correction is saved" in saved.text
    assert "&lt;b&gt;dust&lt;/b&gt;" in saved.text
    assert httpx.get(f"{server}/api/classifications/{rec['id']}").json()["feedback"][-1]["label"] == "nebula"
    assert httpx.get(f"{server}/classifications/999999").status_code == 404
    model = httpx.get(f"{server}/models/dso")
    assert model.status_code == 200 and "Held-out test metrics" in model.text and "astroclassify train" in model.text
    assert httpx.get(f"{server}/models/dso/plots/reliability.png").headers["content-type"] == "image/png"
    assert httpx.get(f"{server}/models/dso/plots/..%2Fmodel.json").status_code == 404


def test_feedback_exports_as_a_valid_dataset(server, shared_data, tmp_path):
    import io
    import zipfile

    path = (
        shared_data
        / "nasa-planets-galaxies/planet"
        / sorted(p.name for p in (shared_data / "nasa-planets-galaxies/planet").iterdir())[0]
    )
    rec = httpx.post(f"{server}/api/classify", files={"image": ("p.jpg", path.read_bytes(), "image/jpeg")}).json()
    httpx.post(f"{server}/api/classifications/{rec['id']}/feedback", json={"label": "planet", "comment": "Saturn"})
    res = httpx.get(f"{server}/api/feedback/export")
    assert res.status_code == 200 and res.headers["content-type"] == "application/zip"
    zipfile.ZipFile(io.BytesIO(res.content)).extractall(tmp_path)
    check = run_cli("data", "check", str(tmp_path / "feedback"), "--json")
    assert check.returncode == 0, check.stderr  # checksums verified against the stored sha256
    report = json.loads(check.stdout)
    assert report["ok"] and report["n"] == int(res.headers["X-Images"]) >= 1
    manifest = (tmp_path / "feedback" / "manifest.csv").read_text()
    assert "Saturn" in manifest and f",{rec['id']}," in manifest


def test_200_classifications_from_20_clients_each_stored_once(server, shared_data):
    from concurrent.futures import ThreadPoolExecutor

    images = sorted((shared_data / "hubble-dso/galaxy").iterdir())[:10]
    payloads = [(f"conc-{i:03d}.jpg", distinct(images[i % 10].read_bytes(), i)) for i in range(200)]

    def send(chunk):
        with httpx.Client(timeout=120) as client:
            return [client.post(f"{server}/api/classify", files={"image": (n, d, "image/jpeg")}) for n, d in chunk]

    with ThreadPoolExecutor(20) as pool:
        responses = [r for rs in pool.map(send, [payloads[i::20] for i in range(20)]) for r in rs]
    assert [r.status_code for r in responses] == [200] * 200
    ids = [r.json()["id"] for r in responses]
    assert len(set(ids)) == 200
    listing = httpx.get(f"{server}/api/classifications", params={"per_page": 200}).json()
    stored = [i for i in listing["items"] if i["file"].startswith("conc-")]
    assert sorted(i["file"] for i in stored) == sorted(n for n, _ in payloads)  # each exactly once
    gallery = httpx.get(f"{server}/gallery").text
    assert "conc-" in gallery


def test_explanation_png_per_record_and_label(server, shared_data):
    from PIL import Image

    path = shared_data / "hubble-dso/galaxy/heic0007b.jpg"
    data = distinct(path.read_bytes(), "explanation")
    rec = httpx.post(f"{server}/api/classify", files={"image": (path.name, data, "image/jpeg")}).json()
    assert rec["explanation_url"] == f"/api/classifications/{rec['id']}/explanation.png"
    assert rec["credit"] == {
        "archive": "ESA/Hubble",
        "id": "heic0007b",
        "text": "ESA/Hubble & NASA",
        "url": "https://esahubble.org/images/heic0007b/",
        "license": "CC BY 4.0",
    }
    assert rec["low_confidence"] is (rec["confidence"] < 0.6) and rec["anomaly_score"] is None
    first = httpx.get(server + rec["explanation_url"])
    assert first.status_code == 200 and first.headers["content-type"] == "image/png"
    with Image.open(path) as original, Image.open(io.BytesIO(first.content)) as overlay:
        assert overlay.format == "PNG" and overlay.size == original.size  # 500x345: drawn at full size
    again = httpx.get(server + rec["explanation_url"])
    assert again.content == first.content  # rendered once, then served from disk
    other = httpx.get(server + rec["explanation_url"], params={"label": "planet"})
    assert other.status_code == 200 and other.content != first.content
    bad = httpx.get(server + rec["explanation_url"], params={"label": "comet"})
    assert bad.status_code == 422 and "not one of model 'dso''s classes" in bad.json()["error"]["message"]
    assert httpx.get(f"{server}/api/classifications/999999/explanation.png").status_code == 404
    assert httpx.get(f"{server}/api/models").json()[0]["explainable"] is True


def test_renamed_files_get_no_guessed_credit(server, shared_data):
    data = distinct((shared_data / "hubble-dso/galaxy/heic0007b.jpg").read_bytes(), "renamed")
    rec = httpx.post(f"{server}/api/classify", files={"image": ("my-photo.jpg", data, "image/jpeg")}).json()
    assert rec["credit"] is None


def test_every_curl_example_on_the_documentation_page_works(server, shared_data, tmp_path):
    """Run the page's curl commands as printed, against this server, from a folder with the named files."""
    import html
    import re
    import shutil
    import subprocess
    import zipfile

    from tests.conftest import jpeg_bytes, make_sky

    if not shutil.which("curl"):
        pytest.skip("curl not installed")
    page = httpx.get(f"{server}/documentation").text
    blocks = [html.unescape(b) for b in re.findall(r"<pre>(.*?)</pre>", page, flags=re.S)]
    commands = [c for b in blocks for c in b.replace("\\\n", " ").splitlines() if c.startswith("curl ")]
    assert len(commands) >= 10
    galaxy = (shared_data / "hubble-dso/galaxy/heic0007b.jpg").read_bytes()
    (tmp_path / "m51.jpg").write_bytes(galaxy)
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(make_sky("nebula", 200)))
    shutil.copyfile(next((shared_data / "hubble-dso/nebula").iterdir()), tmp_path / "b.fits")  # a JPEG misnamed
    with zipfile.ZipFile(tmp_path / "survey.zip", "w") as zf:
        zf.writestr("one.jpg", galaxy)
    # Record 1 must exist for the examples that use it: classify first, as the page does.
    for command in commands:
        command = command.replace("http://127.0.0.1:8000", server)
        res = subprocess.run(
            f"{command} --silent --show-error --fail-with-body --max-time 60",
            shell=True,
            cwd=tmp_path,
            capture_output=True,
            timeout=90,
        )
        assert res.returncode == 0, f"{command}: {res.stdout[:300]!r} {res.stderr[:300]!r}"
    assert zipfile.is_zipfile(tmp_path / "feedback.zip")
    for name in ("m51-gradcam.png", "m51-why-nebula.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
