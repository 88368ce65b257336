"""Every parser on every saved APOD page and API body (../shared/data/apod)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from astroclassify.errors import IngestError
from astroclassify.ingestion.apod import LICENSE, api_error_message, parse_api_item, parse_archive, parse_day
from astroclassify.ingestion.sources import NotAPicturePage

# file: (date, media type, title, image URL ends, hires URL ends, credit starts, explanation starts, explanation ends)
DAYS = {
    "ap950622.html": ("1995-06-22", "image", "The Earth from Apollo 17", "image/earth_a17.gif", "image/earth_a17.gif",
                      "NASA, Apollo 17, NSSDC", "In 1972 Astronauts", "NASA NSSDC press release."),
    "ap200609.html": ("2020-06-09", "image", "Orion over Argentine Mountains", "OrionMountains_Tabbush_960.jpg",
                      "OrionMountains_Tabbush_2048.jpg", "Nicolas Tabbush", "Do you recognize", "San Juan, Argentina."),
    "ap211010.html": ("2021-10-10", "video", "Full Moon Silhouettes", None, None, "Mark Gee", "Have you ever watched",
                      "lunar enthusiasts."),
    "ap220330.html": ("2022-03-30", "video", "Animation: Odd Radio Circles", None, None, "Illustration: Sam Moorfield",
                      "What do you call", "promising scenarios."),
    "ap220420.html": ("2022-04-20", "image", "Planet Line over New York Bridge", "PlanetBridge_Honda_960.jpg",
                      "PlanetBridge_Honda_3000.jpg", "Stan Honda", "There's an interesting sky", "Mercury in June."),
    "ap220424.html": ("2022-04-24", "image", "Split the Universe", "SatelliteSale_NASA_960_split3.jpg",
                      "SatelliteSale_NASA_960_split3.jpg", "NASA, Erwin", "Just now, before you hit", "Or two."),
    "ap230210.html": ("2023-02-10", "image", "ZTF meets ATLAS", "C2022E3ZTFmeetsC2022U2Atlasbeschriftet1024.jpg",
                      "C2022E3ZTFmeetsC2022U2Atlasbeschriftet.jpg", "Stefan Bemmerl", "Fading as it races", "Mars tonight."),
    # The picture links to a video web page, not to a larger image: the picture is the best there is.
    "ap241207.html": ("2024-12-07", "image", "Rocket Engine Fireplace", "NASARocketEngineFireplaceSnap600.png",
                      "NASARocketEngineFireplaceSnap600.png", "NASA", "You might not think", "Space Launch System rocket."),
    "ap250324.html": ("2025-03-24", "video", "A Total Lunar Eclipse Over Uruguay", None, None, "Mauricio Salazar",
                      "If the full Moon suddenly faded", "dominated the sky."),
    "astropix_current_2023-02-10.html": ("2023-02-11", "image", "Magellanic Clouds over Chile", "magellanic1200.jpg",
                                         "image/2302/magellanic.jpg", "Felipe Mac Auliffe", "The two prominent clouds",
                                         "Small Magellanic Clouds."),
}  # fmt: skip
# A still image that links to a video page: the still is classified, the video recorded.
STILLS_OF_VIDEOS = {"ap241207.html": "https://plus.nasa.gov/video/nasa-rocket-engine-fireplace/"}
NOT_PICTURES = [
    "ap_faq.html",
    "archivepix.html",
    "calendar_allyears.html",
    "calendar_ca2301.html",
    "calendar_ca9601.html",
    "lib_about_apod.html",
    "lib_aptree.html",
    "lib_edlinks.html",
]


@pytest.fixture(scope="module")
def apod(shared_data):
    root = shared_data / "apod"
    urls = {m["file"]: m["source_url"] for m in json.loads((root / "html" / "manifest.json").read_text())}
    return root, urls


def test_every_saved_page_is_covered(apod):
    root, _ = apod
    assert {p.name for p in (root / "html").glob("*.html")} == set(DAYS) | set(NOT_PICTURES)


@pytest.mark.parametrize("name", sorted(DAYS))
def test_day_pages(apod, name):
    root, urls = apod
    date, media, title, image, hires, credit, starts, ends = DAYS[name]
    item = parse_day((root / "html" / name).read_bytes(), urls[name])
    assert item.key == f"apod:{date}" and item.date == dt.date.fromisoformat(date)
    assert item.media_type == media
    assert item.title == title
    assert item.credit.startswith(credit)
    assert item.explanation.startswith(starts) and item.explanation.endswith(ends)
    assert "Tomorrow's picture" not in item.explanation and "Archive" not in item.explanation[-40:]
    if media == "image":
        assert item.image_url.startswith("https://apod.nasa.gov/apod/image/") and item.image_url.endswith(image)
        assert item.hires_url.endswith(hires)
        assert item.video_url == STILLS_OF_VIDEOS.get(name)
    else:
        assert item.image_url is None and item.hires_url is None
        assert item.video_url.startswith("https://")


def test_credit_and_licence(apod):
    root, urls = apod
    copyrighted = parse_day((root / "html" / "ap200609.html").read_bytes(), urls["ap200609.html"])
    assert copyrighted.license == "© Nicolas Tabbush"
    nasa = parse_day((root / "html" / "ap950622.html").read_bytes(), urls["ap950622.html"])
    assert nasa.license == LICENSE
    video = parse_day((root / "html" / "ap250324.html").read_bytes(), urls["ap250324.html"])
    assert video.video_url.endswith("image/2503/LunarEclipseUruguay_Salazar.mp4")


@pytest.mark.parametrize("name", NOT_PICTURES)
def test_non_picture_pages_are_recognised(apod, name):
    root, urls = apod
    with pytest.raises(NotAPicturePage):
        parse_day((root / "html" / name).read_bytes(), urls[name])


def test_archive_index(apod):
    root, _ = apod
    days = parse_archive((root / "html" / "archivepix.html").read_bytes())
    assert len(days) == 2963
    assert days[0] == (dt.date(2023, 2, 11), "https://apod.nasa.gov/apod/ap230211.html", "Magellanic Clouds over Chile")
    assert days[-1][:2] == (dt.date(2015, 1, 1), "https://apod.nasa.gov/apod/ap150101.html")
    assert len({d for d, _, _ in days}) == len(days)


def test_api_bodies(apod):
    root, _ = apod
    api = root / "api"
    pod = parse_api_item(json.loads((api / "get-pod.json").read_text()))
    assert (pod.key, pod.media_type, pod.credit) == ("apod:2021-12-06", "image", "Andrew McCarthy")
    assert pod.image_url.endswith("IssMoon_McCarthy_960.jpg") and pod.hires_url.endswith("IssMoon_McCarthy_1663.jpg")
    assert pod.page_url == "https://apod.nasa.gov/apod/ap211206.html"
    image, video = (parse_api_item(b) for b in json.loads((api / "get-pods.json").read_text()))
    assert image.media_type == "image" and image.license == LICENSE  # no copyright field: NASA's
    assert video.media_type == "video" and video.image_url is None
    assert video.video_url.startswith("https://www.youtube.com/embed/")
    assert video.thumbnail_url == "https://img.youtube.com/vi/7NykS2kv_k8/0.jpg"
    empty = parse_api_item(json.loads((api / "200-empty-explanation.json").read_text()))
    assert empty.explanation == "" and empty.credit == "" and empty.title == "Ring Galaxy AM 0644-741"
    with pytest.raises(IngestError, match="valid date"):
        parse_api_item({"title": "no date"})


@pytest.mark.parametrize(
    ("name", "status", "expected"),
    [
        ("400-bad-request-1.json", 400, "Date must be between Jun 16, 1995"),
        ("400-bad-request-2.json", 400, "start_date cannot be after end_date"),
        ("403-api-key-invalid.json", 403, "API_KEY_INVALID: An invalid api_key was supplied"),
        ("403-api-key-missing.json", 403, "API_KEY_MISSING: No api_key was supplied"),
        ("404-no-data.json", 404, "No data available for date: 1995-06-17"),
        ("429-over-rate-limit.json", 429, "OVER_RATE_LIMIT: You have exceeded your rate limit"),
    ],
)
def test_api_error_bodies(apod, name, status, expected):
    root, _ = apod
    message = api_error_message(status, json.loads((root / "api" / name).read_text()))
    assert message.startswith(f"APOD API {status}") and expected in message


def test_words_are_not_split_where_links_end(apod):
    """``<a>Odd Radio Circle</a>s`` is one word; the official parser agrees on every saved page."""
    from bs4 import BeautifulSoup

    root, urls = apod
    odd = parse_day((root / "html" / "ap220330.html").read_bytes(), urls["ap220330.html"]).explanation
    for word in ("Odd Radio Circles,", "Australian SKA", "South African MeerKAT", "optical/IR map", "ORCs’ origins"):
        assert word in odd
    orion = parse_day((root / "html" / "ap200609.html").read_bytes(), urls["ap200609.html"]).explanation
    assert "Orion-encircling" in orion
    for name in DAYS:
        if not name.startswith("ap"):
            continue
        page = (root / "html" / name).read_bytes()
        text = BeautifulSoup(page, "html.parser").text  # what nasa/apod-api's parser reads
        official = set(text[text.find("Explanation:") + 12 : text.find("Tomorrow's picture:")].split())
        ours = set(parse_day(page, urls[name]).explanation.split())
        assert ours <= official, (name, sorted(ours - official))


def test_copyright_covers_the_holder_not_the_music(apod):
    root, urls = apod
    video = parse_day((root / "html" / "ap211010.html").read_bytes(), urls["ap211010.html"])
    assert video.credit == "Mark Gee; Music: Tenderness (Dan Phillipson)"
    assert video.license == "© Mark Gee"
    from astroclassify.ingestion.apod import copyright_holder

    assert copyright_holder("Jane Doe; Text: John Roe") == "Jane Doe"
    assert copyright_holder("Processing: A. B.") == ""


def test_youtube_days_get_a_thumbnail_from_the_html_too(apod):
    root, urls = apod
    odd = parse_day((root / "html" / "ap220330.html").read_bytes(), urls["ap220330.html"])
    assert odd.thumbnail_url == "https://img.youtube.com/vi/m8qvOpcDt1o/0.jpg"  # as the API's thumbs=true gives


def test_generic_title_never_replaces_the_index_title():
    page = (
        "<html><head><title>Astronomy Picture of the Day</title></head><body><center>2024 January 6<br>"
        '<a href="image/2401/big.jpg"><img src="image/2401/small.jpg"></a></center>'
        "<center><b>Explanation:</b> A fine picture.</center></body></html>"
    )
    item = parse_day(page, "https://apod.nasa.gov/apod/ap240106.html")
    assert item.title == ""  # the pipeline keeps the index's title


def test_a_day_page_without_a_bold_label_is_still_a_picture():
    page = (
        "<html><head><title>APOD: 2024 January 6 - Moon</title></head><body><center>2024 January 6<br>"
        '<img src="image/2401/moon.jpg"></center><p>Explanation: The <a href="x.html">Moon</a>s of Mars.'
        "<center>Tomorrow's picture</center></body></html>"
    )
    item = parse_day(page, "https://apod.nasa.gov/apod/ap240106.html")
    assert (item.media_type, item.title) == ("image", "Moon")
    assert item.explanation == "The Moons of Mars."


def test_an_unknown_layout_at_a_day_url_is_a_failure_not_a_skip():
    new_site = "<html><head><title>APOD - NASA Science</title></head><body><div id='app'></div></body></html>"
    with pytest.raises(IngestError, match="not APOD's page layout.*--base-url.*--api"):
        parse_day(new_site, "https://science.nasa.gov/apod/ap240106.html")


def test_only_http_links_leave_a_page():
    index = (
        '<b>2024 January 06: <a href="javascript:alert(document.cookie)//ap240106.html">Evil</a><br>'
        '2024 January 05: <a href="ap240105.html">Fine</a></b>'
    )
    assert [url for _, url, _ in parse_archive(index)] == ["https://apod.nasa.gov/apod/ap240105.html"]
    page = (
        "<html><body><center>2024 January 6<br>"
        '<a href="javascript:alert(1)"><img src="data:image/png;base64,AAAA"></a>'
        '<img src="image/2401/real.jpg"></center><center><b>Explanation:</b> x</center></body></html>'
    )
    item = parse_day(page, "https://apod.nasa.gov/apod/ap240106.html")
    assert item.image_url == "https://apod.nasa.gov/apod/image/2401/real.jpg" and item.video_url is None
    with pytest.raises(IngestError, match="not an http"):
        _item_with_url("javascript:alert(1)")


def _item_with_url(url):
    from astroclassify.ingestion.sources import ArchiveItem

    return ArchiveItem(source="apod", key="apod:2024-01-06", page_url=url, title="", media_type="image")
