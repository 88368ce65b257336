"""``astroclassify ingest`` end to end against the local archive site: provenance, resume, dedupe, faults."""

from __future__ import annotations

import csv
import json
import sqlite3

import pytest

from tests.conftest import ESA_GALAXIES, ESA_NEBULAE, day

# The saved pages from 2023-02-10 on, and 2023-02-11: listed by the real index, its page made from a real one.
REAL_IMAGE_DAYS = {"2025-03-24": "skipped", "2024-12-07": "stored", "2023-02-11": "stored", "2023-02-10": "stored"}
SINCE = ("--since", "2023-02-10")  # the real index lists every day since 2015: tests read a few of them
FIELDS = {"source", "date", "title", "media_type", "image_url", "hires_url", "credit", "status"}


def lines(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def db(cli) -> sqlite3.Connection:
    return sqlite3.connect(cli.home / "astroclassify.db")


@pytest.mark.slow
def test_apod_html_with_every_fault_then_resume(site, cli):
    faults = {
        day(0): "500",  # image answers 500 every time
        day(1): "500_once",  # ... once: the retry succeeds in the same run
        day(2): "429_once",  # rate limited once, with Retry-After
        day(3): "timeout",  # answers after the deadline
        day(4): "drop",  # closes the connection mid-body
        day(5): "html",  # an HTML page served as image/jpeg
        day(6): "loop",  # a redirect loop
        day(7): "huge",  # Content-Length: 2 GB
        day(8): "truncated",  # half a JPEG with a matching length
    }
    paths = {}
    for d, fault in faults.items():
        paths[d] = site.add_day(d, f"Day with {fault}")
        site.faults[paths[d]] = fault
    page_500 = day(9)
    site.add_day(page_500, "Page that fails")
    site.faults[f"/apod/ap{page_500:%y%m%d}.html"] = "500"

    first = cli("ingest", "apod", "--base-url", f"{site.url}/apod/", *SINCE, "--json")
    assert first.returncode == 1, first.stderr  # finished, with failures
    by_date = {r["date"]: r for r in lines(first)}
    assert all(set(r) >= FIELDS for r in by_date.values())
    for date, status in REAL_IMAGE_DAYS.items():
        assert by_date[date]["status"] == status, by_date[date]
    assert by_date["2025-03-24"]["media_type"] == "video" and "recorded" in by_date["2025-03-24"]["reason"]
    assert by_date["2023-02-10"]["hires_url"].endswith("C2022E3ZTFmeetsC2022U2Atlasbeschriftet.jpg")
    assert by_date["2023-02-10"]["credit"] == "Stefan Bemmerl"
    expected_errors = {
        day(0): "HTTP 500 after 2 attempts",
        day(3): "Timeout",
        day(4): "RemoteProtocolError",
        day(5): "body is HTML",
        day(6): "too many redirects",
        day(7): "Content-Length 2 GiB",
        day(8): "truncated",
        page_500: "HTTP 500",
    }
    for d, message in expected_errors.items():
        row = by_date[d.isoformat()]
        assert row["status"] == "failed" and message in row["error"], row
    assert by_date[day(1).isoformat()]["status"] == "stored"
    assert by_date[day(2).isoformat()]["status"] == "stored"
    assert "8 failed" in first.stderr

    site.faults_on = False
    site.log.clear()
    second = cli("ingest", "apod", "--base-url", f"{site.url}/apod/", *SINCE, "--json")
    assert second.returncode == 0, second.stderr
    again = {r["date"]: r for r in lines(second)}
    for d in expected_errors:
        assert again[d.isoformat()]["status"] == "stored", again[d.isoformat()]
    for date in REAL_IMAGE_DAYS:
        assert again[date]["status"] == "skipped"
    # Resumed without touching what it had: no page or image of a stored day was requested.
    requested = {p for _, _, p, _ in site.log}
    assert not any("C2022E3ZTFmeets" in p or "ap230210" in p for p in requested)
    assert paths[day(1)] not in requested
    with db(cli) as con:
        failed = con.execute("select count(*) from ingested_items where status = 'failed'").fetchone()[0]
        attempts = dict(con.execute("select key, attempts from ingested_items").fetchall())
        runs = con.execute("select status, counts from ingest_runs order by id").fetchall()
    assert failed == 0 and attempts[f"apod:{day(0).isoformat()}"] == 2
    assert [r[0] for r in runs] == ["finished", "finished"]
    assert json.loads(runs[0][1])["failed"] == 8

    third = cli("ingest", "apod", "--base-url", f"{site.url}/apod/", *SINCE, "--json")
    assert {r["status"] for r in lines(third)} == {"skipped"}


def test_saved_pages_of_every_layout_and_days_before_2015(site, cli):
    """archivepix.html lists only days since 2015; older ones come from the full archive it links to."""
    statuses = {"2022-04-24": "stored", "2022-04-20": "stored", "2022-03-30": "skipped", "2021-10-10": "skipped",
                "2020-06-09": "stored", "1995-06-22": "stored"}  # fmt: skip
    for date, status in statuses.items():
        r = cli("ingest", "apod", "--base-url", f"{site.url}/apod/", "--since", date, "--until", date, "--json")
        assert r.returncode == 0, r.stderr
        (row,) = lines(r)
        assert (row["date"], row["status"]) == (date, status), row
    assert site.requests_to("/apod/archivepixFull.html") == 1  # read only for the range before 2015
    old = cli(
        "ingest", "apod", "--base-url", f"{site.url}/apod/", "--since", "1995-06-22", "--until", "1995-06-22", "--json"
    )
    assert [r["status"] for r in lines(old)] == ["skipped"]


def test_days_before_2015_without_the_full_archive_are_named_by_date(site, cli):
    site.full_archive = False  # archivepixFull.html answers 404: day pages are named by their dates
    r = cli(
        "ingest", "apod", "--base-url", f"{site.url}/apod/", "--since", "1995-06-20", "--until", "1995-06-22", "--json"
    )
    assert r.returncode == 0, r.stderr
    rows = {x["date"]: x for x in lines(r)}
    assert rows["1995-06-22"]["status"] == "stored" and rows["1995-06-22"]["title"] == "The Earth from Apollo 17"
    assert rows["1995-06-21"]["status"] == rows["1995-06-20"]["status"] == "skipped"  # no page on the site
    assert (
        "no APOD page for this date" in rows["1995-06-21"]["reason"] or "not a picture" in rows["1995-06-21"]["reason"]
    )


def test_a_range_without_a_day_is_an_error(site, cli):
    before = cli("ingest", "apod", "--base-url", f"{site.url}/apod/", "--since", "1990-01-01", "--until", "1990-12-31")
    assert before.returncode == 2, before.stderr
    assert "no APOD day between 1990-01-01 and 1990-12-31" in before.stderr and "began on 1995-06-16" in before.stderr
    after = cli("ingest", "apod", "--base-url", f"{site.url}/apod/", "--since", "2030-01-01")
    assert after.returncode == 2 and "no APOD day between 2030-01-01" in after.stderr


def test_an_archive_page_without_days_is_an_error(site, cli):
    site.faults["/apod/archivepix.html"] = "html"  # an HTML page with no day in it
    r = cli("ingest", "apod", "--base-url", f"{site.url}/apod/")
    assert r.returncode == 2
    assert "lists no days: not the classic archive layout" in r.stderr and "--api" in r.stderr


def test_provenance_is_stored(site, cli):
    result = cli(
        "ingest", "apod", "--base-url", f"{site.url}/apod/", "--since", "2020-06-09", "--until", "2020-06-09", "--json"
    )
    assert result.returncode == 0, result.stderr
    with db(cli) as con:
        con.row_factory = sqlite3.Row
        row = con.execute("select * from ingested_items where key = 'apod:2020-06-09'").fetchone()
    assert row["status"] == "stored" and row["media_type"] == "image"
    assert row["page_url"] == f"{site.url}/apod/ap200609.html"
    assert row["image_url"] == f"{site.url}/apod/image/2006/OrionMountains_Tabbush_960.jpg"
    assert row["title"] == "Orion over Argentine Mountains" and row["credit"] == "Nicolas Tabbush"
    assert row["license"] == "© Nicolas Tabbush" and row["explanation"].startswith("Do you recognize")
    assert len(row["sha256"]) == 64 and len(row["pixels_sha256"]) == 64 and (row["width"], row["height"]) == (320, 240)
    stored = cli.home / "uploads" / row["stored_name"]
    import hashlib

    assert hashlib.sha256(stored.read_bytes()).hexdigest() == row["sha256"]


def test_exact_and_near_duplicates_are_reported_not_dropped(site, cli):
    # Days are ingested newest first; the first one stored is the original the others point to.
    original = site.add_day(day(2), "Original")
    copy = site.add_day(day(1), "Re-posted")
    near = site.add_day(day(0), "Re-processed")
    site.aliases[copy] = (original, "exact")
    site.aliases[near] = (original, "near")
    result = cli("ingest", "apod", "--base-url", f"{site.url}/apod/", "--since", day(0).isoformat(), "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["date"]: r for r in lines(result)}
    assert rows[day(2).isoformat()]["status"] == "stored"
    for d, kind in ((day(1), "exact"), (day(0), "near")):
        assert rows[d.isoformat()]["status"] == "duplicate"
        assert rows[d.isoformat()]["duplicate_of"] == f"apod:{day(2).isoformat()}"
        assert rows[d.isoformat()]["reason"] == f"{kind} duplicate"
    with db(cli) as con:
        kinds = dict(
            con.execute("select key, duplicate_kind from ingested_items where status = 'duplicate'").fetchall()
        )
    assert kinds == {f"apod:{day(1).isoformat()}": "exact", f"apod:{day(0).isoformat()}": "near"}
    # A different picture in the same run is not a duplicate.
    assert {d for d, r in rows.items() if r["status"] == "stored"} == {day(2).isoformat(), "2024-12-07"}


def test_limit_since_until_and_classify(site, cli):
    result = cli(
        "ingest", "apod", "--base-url", f"{site.url}/apod/", "--since", "2020-01-01", "--until", "2023-12-31",
        "--limit", "2", "--classify", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = lines(result)
    assert [r["date"] for r in rows] == ["2023-02-11", "2023-02-10"]
    assert all(
        r["label"] in ("galaxy", "nebula", "planet", "star_cluster") for r in rows
    )  # the default model: bundled dso
    assert all(0 < r["confidence"] <= 1 for r in rows)
    with db(cli) as con:
        names = [r[0] for r in con.execute("select c.filename from classifications c order by c.id")]
    assert names == ["ap230211.jpg", "ap230210.jpg"]  # archive ids, so the web app shows credit lines
    nxt = cli("ingest", "apod", "--base-url", f"{site.url}/apod/", "--since", "2020-01-01", "--limit", "2", "--json")
    # Newest first: a video day (recorded) and 2024-12-07 are the two new items; then the limit stops it.
    assert [(r["date"], r["status"]) for r in lines(nxt)] == [
        ("2025-03-24", "skipped"),
        ("2024-12-07", "stored"),
        ("2023-02-11", "skipped"),
        ("2023-02-10", "skipped"),
    ]


def test_apod_api(site, cli):
    api = f"{site.url}/planetary/apod"
    ok = cli("ingest", "apod", "--api", "--api-url", api, "--since", "2021-11-07", "--until", "2021-11-08", "--json")
    assert ok.returncode == 0, ok.stderr
    rows = {r["date"]: r for r in lines(ok)}
    assert rows["2021-11-08"]["status"] == "skipped" and rows["2021-11-08"]["media_type"] == "video"
    assert rows["2021-11-07"]["title"] == "The Cat's Eye Nebula in Optical and X-ray"
    assert rows["2021-11-07"]["status"] == "stored"
    assert rows["2021-11-07"]["hires_url"].endswith("/apod/image/2111/CatsEye_HubblePohl_1278.jpg")
    one_day = cli(
        "ingest", "apod", "--api", "--api-url", api, "--since", "2021-12-06", "--until", "2021-12-06", "--json"
    )
    assert [(r["title"], r["credit"], r["status"]) for r in lines(one_day)] == [
        ("Space Station Silhouette on the Moon", "Andrew McCarthy", "stored")
    ]
    random_days = cli("ingest", "apod", "--count", "2", "--api-url", api, "--json")
    assert sorted(r["status"] for r in lines(random_days)) == ["skipped", "skipped"]  # the same two days again
    no_data = cli("ingest", "apod", "--api", "--api-url", api, "--since", "1995-06-17", "--until", "1995-06-17")
    assert no_data.returncode == 0 and "0 stored" in no_data.stderr
    for args, message in (
        (("--since", "1995-06-01", "--until", "1995-06-01"), "Date must be between Jun 16, 1995"),
        (("--since", "2021-11-07", "--until", "2021-11-08", "--api-key", "BAD"), "API_KEY_INVALID"),
        (("--since", "2021-11-07", "--until", "2021-11-08", "--api-key", "LIMITED"), "OVER_RATE_LIMIT"),
    ):
        bad = cli("ingest", "apod", "--api", "--api-url", api, *args)
        assert bad.returncode == 2, bad.stderr
        assert bad.stderr.strip().splitlines()[-1].startswith("error:") and message in bad.stderr
    cli.env["ASTROCLASSIFY_APOD_API_KEY"] = "BAD"
    from_settings = cli("ingest", "apod", "--api", "--api-url", api, "--since", "2021-11-07")
    assert from_settings.returncode == 2 and "API_KEY_INVALID" in from_settings.stderr


@pytest.mark.slow
def test_interrupted_run_resumes(site, cli):
    import signal
    import subprocess
    import sys

    site.image_delay_s = 0.3  # well inside the client's deadline: slow, not failing
    since = ("--since", "2023-02-01")  # 11 listed days and the 2 saved newer ones: 12 images, 1 video
    proc = subprocess.Popen(
        [sys.executable, "-m", "astroclassify.cli", "ingest", "apod", "--base-url", f"{site.url}/apod/", *since, "--json"],
        env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A runner started in the background (``cmd &``) ignores SIGINT, and a child inherits that:
        # give the child Python's default, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    first = ""
    for line in proc.stdout:  # up to the first image stored, then interrupt the run midway
        first += line
        if json.loads(line)["status"] == "stored":
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    out = first + out
    assert proc.returncode == 130, err
    done = [json.loads(x) for x in out.splitlines()]
    assert 1 <= sum(r["status"] == "stored" for r in done) < 12
    site.image_delay_s = 0
    rest = cli("ingest", "apod", "--base-url", f"{site.url}/apod/", *since, "--json")
    assert rest.returncode == 0, rest.stderr
    statuses = {r["date"]: r["status"] for r in lines(rest)}
    assert all(statuses[r["date"]] == "skipped" for r in done)
    with db(cli) as con:
        assert con.execute("select count(*) from ingested_items where status = 'stored'").fetchone()[0] == 12
        assert con.execute("select count(distinct key) from ingested_items").fetchone()[0] == 13
        assert [r[0] for r in con.execute("select status from ingest_runs order by id")] == ["interrupted", "finished"]


def test_esahubble_categories_become_a_dataset(site, cli, tmp_path):
    result = cli(
        "ingest", "esahubble", "--base-url", site.url, "--category", "galaxies", "--category", "nebulae", "--json"
    )
    assert result.returncode == 0, result.stderr
    rows = lines(result)
    assert [r["status"] for r in rows] == ["stored"] * 7
    assert [r["category"] for r in rows] == ["galaxies"] * 5 + ["nebulae"] * 2
    first = rows[0]
    assert first["title"] == f"Hubble image {ESA_GALAXIES[0]} (galaxies)" and first["date"] == "2024-01-31"
    assert first["image_url"].endswith(f"/archives/images/screen/{ESA_GALAXIES[0]}.jpg")
    assert first["hires_url"].endswith(f"/archives/images/original/{ESA_GALAXIES[0]}.tif")
    assert first["credit"] == "ESA/Hubble & NASA, A. Astronomer"
    # Listing pages: galaxies 1, 2 and the 404 past the end; nebulae 1 (it says there is no next).
    assert site.requests_to("/images/archive/category/galaxies/page/3/") == 1

    out = tmp_path / "dataset"
    export = cli("dataset", "export", "--out", str(out), "--source", "esahubble")
    assert export.returncode == 0, export.stderr
    with (out / "manifest.csv").open() as fh:
        manifest = list(csv.DictReader(fh))
    assert sorted(r["label"] for r in manifest) == ["galaxies"] * 5 + ["nebulae"] * 2
    assert {r["key"] for r in manifest} == {f"esahubble:{i}" for i in ESA_GALAXIES + ESA_NEBULAE}
    assert all((out / r["file"]).is_file() and r["license"].startswith("CC BY 4.0") for r in manifest)
    check = cli("data", "check", str(out))
    assert check.returncode == 0, check.stdout + check.stderr
    newest = cli(
        "dataset", "export", "--out", str(tmp_path / "newest"), "--since", "2024-01-30", "--category", "galaxies"
    )
    assert newest.returncode == 0 and "2 image(s) written" in newest.stdout
    no_labels = cli("dataset", "export", "--out", str(tmp_path / "fb"), "--labels", "feedback")
    assert no_labels.returncode == 0 and "0 image(s) written" in no_labels.stdout and "7 left out" in no_labels.stdout
    wrong = cli("dataset", "export", "--out", str(tmp_path / "x"), "--labels", "votes")
    assert wrong.returncode == 2 and "labels must be one of category, feedback, model" in wrong.stderr


def test_bad_arguments_get_one_line_errors(site, cli):
    for args, message in (
        (("ingest", "hubblesite"), "unknown source 'hubblesite'"),
        (("ingest", "apod", "--since", "yesterday"), "--since must be a date"),
        (("ingest", "esahubble", "--category", "dogs"), "unknown ESA/Hubble categories"),
        (("watch", "--every", "sometimes", "--once"), "--every must look like"),
        (("ingest", "apod", "--alert-below", "0.5"), "--alert-below and --alert-unusual need --classify"),
        (("ingest", "apod", "--alert-unusual"), "--alert-below and --alert-unusual need --classify"),
    ):
        r = cli(*args)
        assert r.returncode == 2 and r.stderr.strip().startswith("error:") and message in r.stderr, r.stderr
    unreachable = cli("ingest", "apod", "--base-url", "http://127.0.0.1:9/apod/")
    assert unreachable.returncode == 2 and "robots.txt unreachable" in unreachable.stderr


def test_a_moved_site_is_a_clear_error_and_mirrors_take_over(site, cli):
    """APOD moved to science.nasa.gov/apod in 2026 with a new layout; no page of it is saved, none is guessed."""
    site.redirects["/apod/archivepix.html"] = "/newsite/"
    moved = cli("ingest", "apod", "--base-url", f"{site.url}/apod/", *SINCE)
    assert moved.returncode == 2
    error = moved.stderr.strip().splitlines()[-1]
    assert f"redirected to {site.url}/newsite/" in error and "not the classic archive layout" in error
    assert "--base-url with a mirror" in error and "ASTROCLASSIFY_APOD_MIRRORS" in error and "--api" in error
    site.redirects.clear()

    # The main site unreachable: the first mirror with the classic layout is used, day pages included.
    env = {
        "ASTROCLASSIFY_APOD_BASE_URL": "http://127.0.0.1:9/apod/",
        "ASTROCLASSIFY_APOD_MIRRORS": f"{site.url}/newsite/,{site.url}/apod/",
    }
    mirrored = cli("ingest", "apod", *SINCE, "--json", env=env)
    assert mirrored.returncode == 0, mirrored.stderr
    rows = lines(mirrored)
    assert {r["date"] for r in rows if r["status"] == "stored"} >= {"2023-02-10", "2024-12-07"}
    assert all(r["page_url"].startswith(f"{site.url}/apod/") for r in rows)


def test_the_api_address_is_a_setting_and_a_new_format_is_named(site, cli):
    env = {"ASTROCLASSIFY_APOD_API_URL": f"{site.url}/planetary/apod"}
    ok = cli("ingest", "apod", "--api", "--since", "2021-11-07", "--until", "2021-11-08", "--json", env=env)
    assert ok.returncode == 0, ok.stderr and len(lines(ok)) == 2
    wordpress = cli(
        "ingest", "apod", "--api", "--api-url", f"{site.url}/wp-json/wp/v2/apod-basic", "--since", "2026-09-01"
    )
    assert wordpress.returncode == 2
    assert "answered with WordPress posts, not APOD items" in wordpress.stderr and "--api-url" in wordpress.stderr
    ignored = cli(
        "ingest",
        "apod",
        "--api",
        "--api-url",
        f"{site.url}/planetary/apod",
        "--since",
        "2024-01-01",
        "--until",
        "2024-01-01",
    )
    assert ignored.returncode == 2 and "ignored the dates asked for (2024-01-01 to 2024-01-01)" in ignored.stderr


def test_an_archive_images_credit_and_licence_travel_with_its_label(site, cli, tmp_path):
    """A correction of an ESA/Hubble image is shared, aggregated, exported and imported with its provenance."""
    from astroclassify.sharing.contributions import contributions_page
    from astroclassify.sharing.exchange import export_collection, import_collection
    from astroclassify.sharing.votes import aggregate_votes
    from astroclassify.store import open_store
    from astroclassify.store.classifications import ClassificationQuery, Classifications

    done = cli("ingest", "esahubble", "--base-url", site.url, "--category", "galaxies", "--limit", "1", "--classify")
    assert done.returncode == 0, done.stderr
    with open_store(cli.home) as store:
        with store.session() as session:
            repo = Classifications(session)
            record = repo.search(ClassificationQuery())[0][0]
            repo.add_feedback(record.id, "nebula", "")
        (item,) = contributions_page(store)["items"]
        (votes,) = aggregate_votes(store)
        export_collection(store, tmp_path / "shared")
    assert item["credit"] == "ESA/Hubble & NASA, A. Astronomer" and item["licence"].startswith("CC BY 4.0")
    assert votes.credits == [item["credit"]] and votes.licences == [item["licence"]]
    with open_store(tmp_path / "other") as other:
        import_collection(other, tmp_path / "shared")
        (imported,) = aggregate_votes(other)
    assert imported.credits == [item["credit"]] and imported.licences == [item["licence"]]
