"""ESA/Hubble listing and image-page parsers, and how the source walks a newest-first archive."""

from __future__ import annotations

import datetime as dt

from astroclassify.ingestion.esahubble import EsaHubbleSource, parse_image_page, parse_listing
from astroclassify.ingestion.sources import NotAPicturePage
from astroclassify.net.http import PoliteClient
from tests.conftest import ESA_GALAXIES
from tests.ingestion.archive_site import esa_image_page, esa_listing


def test_listing_script_block_and_plain_links():
    items = [{"id": "heic0506a", "title": "Out of this whirl: M51's companion", "date": dt.date(2005, 4, 25)}]
    html = esa_listing("galaxies", 1, items, has_next=False)
    assert parse_listing(html, "https://esahubble.org/images/archive/category/galaxies/page/1/") == [
        ("heic0506a", "https://esahubble.org/images/heic0506a/", "Out of this whirl: M51's companion")
    ]
    plain = b'<ul><li><a href="/images/potw2420a/">A galaxy</a></li><li><a href="/images/archive/">all</a></li></ul>'
    assert parse_listing(plain, "https://esahubble.org/x/") == [
        ("potw2420a", "https://esahubble.org/images/potw2420a/", "A galaxy")
    ]


def test_image_page_sizes_dates_credit():
    item = {"id": "heic0506a", "title": "Whirlpool", "date": dt.date(2005, 4, 25)}
    html = esa_image_page(item, "galaxies")
    page = "https://esahubble.org/images/heic0506a/"
    parsed = parse_image_page(html, page, size="large")
    assert parsed.key == "esahubble:heic0506a" and parsed.date == dt.date(2005, 4, 25)
    assert parsed.image_url == "https://esahubble.org/archives/images/large/heic0506a.jpg"
    assert parsed.hires_url == "https://esahubble.org/archives/images/original/heic0506a.tif"
    assert parsed.category == "galaxies" and parsed.license.startswith("CC BY 4.0")
    assert parsed.credit == "ESA/Hubble & NASA, A. Astronomer"
    assert parse_image_page(html, page).image_url.endswith("/screen/heic0506a.jpg")  # the default size
    try:
        parse_image_page(b"<html><h1>Search</h1></html>", page)
    except NotAPicturePage:
        pass
    else:
        raise AssertionError("a page without downloads is not an image page")


def test_walk_stops_at_older_images_and_at_known_ones(site):
    with PoliteClient(min_interval=0) as client:
        source = EsaHubbleSource(client, ("galaxies",), site.url)
        keys = [s.key for s in source.discover()]
        assert keys == [f"esahubble:{i}" for i in ESA_GALAXIES]  # two listing pages, then the 404
        source.stop_after_older = 2
        seen = []
        for stub in source.discover():
            seen.append(stub.key)
            item = source.fetch(stub)
            if item.date < dt.date(2024, 1, 30):
                source.note_older(stub)
        assert len(seen) == 4  # 01-31, 01-30, then two older ones: the rest is not listed
        known = EsaHubbleSource(client, ("galaxies",), site.url, stop_after_known=1)
        known.known = {f"esahubble:{i}" for i in ESA_GALAXIES[:3]}
        assert [s.key for s in known.discover()] == [f"esahubble:{ESA_GALAXIES[0]}"]
