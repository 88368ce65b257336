"""The web app's Archives page over a store filled by real ingest and watch runs."""

from __future__ import annotations

import re
import sqlite3

import httpx
import pytest

from tests.conftest import day
from tests.web.conftest import serve_process


@pytest.mark.slow
def test_archives_page_shows_sources_runs_alerts_and_images(site, cli):
    broken = site.add_day(day(0), "A day whose image fails")
    site.faults[broken] = "500"
    assert cli("ingest", "apod", "--base-url", f"{site.url}/apod/", "--since", "2023-02-10").returncode == 1
    assert cli("ingest", "esahubble", "--base-url", site.url, "--category", "nebulae", "--classify").returncode == 0
    for date in ("2020-06-09", "1995-06-22"):
        alerted = cli("ingest", "apod", "--base-url", f"{site.url}/apod/", "--since", date, "--until", date,
                      "--classify", "--alert-below", "1.01")  # fmt: skip
        assert alerted.returncode == 0, alerted.stderr
    with serve_process({"ASTROCLASSIFY_HOME": str(cli.home)}) as base:
        page = httpx.get(f"{base}/ingest")
        assert page.status_code == 200
        html = page.text
        sources = html[html.index('id="sources"') : html.index("</table>", html.index('id="sources"'))]
        apod_row = re.search(r'<tr><td data-label="source">apod</td>(.*?)</tr>', sources, re.S).group(1)
        cells = re.findall(r"<td[^>]*>(.*?)</td>", apod_row, re.S)  # data-label: the column's name on a phone
        assert cells[:4] == ["5", "0", "1", "1"]  # stored, duplicate, recorded, failed
        runs = html[html.index('id="runs"') :]
        assert runs.count('<tr><td data-label="run">') == 4 and "failed" in html and "HTTP 500 after 2 attempts" in html
        assert "Credit: Nicolas Tabbush" in html and "Hubble image heic2411a (nebulae)" in html
        alerts = html[html.index('id="alerts"') : html.index("</ul>", html.index('id="alerts"'))]
        assert alerts.count("<li>") == 2 and "log: delivered" in alerts and "apod:2020-06-09" in alerts
        thumbs = re.findall(r'src="(/ingest/thumbs/\d+\.jpg)"', html)
        assert len(thumbs) == 7  # 5 APOD days + 2 nebulae
        for t in thumbs:
            r = httpx.get(base + t)
            assert r.status_code == 200 and r.content.startswith(b"\xff\xd8")
        assert httpx.get(f"{base}/ingest/thumbs/999.jpg").status_code == 404
        # A renamed copy of an ingested image, uploaded later, still gets its archive's credit line.
        stored = (
            sqlite3.connect(cli.home / "astroclassify.db")
            .execute("select stored_name from ingested_items where key = 'apod:2020-06-09'")
            .fetchone()[0]
        )
        data = (cli.home / "uploads" / stored).read_bytes()
        upload = httpx.post(f"{base}/api/classify", files={"image": ("renamed.jpg", data, "image/jpeg")}).json()
        assert upload["credit"] == {
            "archive": "NASA APOD",
            "id": "2020-06-09",
            "text": "Nicolas Tabbush",
            "url": f"{site.url}/apod/ap200609.html",
            "license": "© Nicolas Tabbush",
        }
        links = re.findall(r'href="/classifications/(\d+)"', html)
        assert len(links) == 4 and httpx.get(f"{base}/classifications/{links[0]}").status_code == 200
        fixed = httpx.post(f"{base}/api/classifications/{links[0]}/feedback", json={"label": "star_cluster"})
        assert fixed.status_code == 200
    # A correction made in the web app labels that archive image in a dataset export.
    export = cli("dataset", "export", "--out", str(cli.home / "corrected"), "--labels", "feedback")
    assert export.returncode == 0 and "1 image(s) written" in export.stdout, export.stdout + export.stderr
    manifest = (cli.home / "corrected" / "manifest.csv").read_text().splitlines()
    assert len(manifest) == 2 and manifest[1].split(",")[1] == "star_cluster"
