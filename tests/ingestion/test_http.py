"""The polite client against a real local HTTP server: etiquette, caching and every fault."""

from __future__ import annotations

import itertools
import time

import pytest

from astroclassify.net.http import USER_AGENT, FetchError, PoliteClient


@pytest.fixture
def client(tmp_path):
    c = PoliteClient(cache_dir=tmp_path / "cache", min_interval=0, backoff=0.05, max_retries=2, timeout=0.6)
    yield c
    c.close()


def test_identifies_itself_and_reads_robots_first(site, client):
    client.get_page(f"{site.url}/apod/ap200609.html")
    paths = [p for _, _, p, _ in site.log]
    assert paths == ["/robots.txt", "/apod/ap200609.html"]
    assert all(h.get("User-Agent") == USER_AGENT for _, _, _, h in site.log)
    assert "astroclassify/" in USER_AGENT and "+https://" in USER_AGENT


def test_robots_disallow_is_honoured(site, client):
    with pytest.raises(FetchError, match="robots.txt"):
        client.get_page(f"{site.url}/apod/private/secret.html")
    assert site.requests_to("/apod/private/secret.html") == 0


class FakeClock:
    """The client's pace on a clock of its own: sleeping advances it, no real second passes."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sent: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_robots_crawl_delay_and_min_interval(site, tmp_path):
    site.robots = "User-agent: *\nCrawl-delay: 1\n"  # whole seconds: what urllib.robotparser reads
    clock = FakeClock()
    with PoliteClient(min_interval=0.1, sleep=clock.sleep, clock=clock) as c:
        for d in ("ap200609", "ap220420", "ap230210"):
            c.get_page(f"{site.url}/apod/{d}.html", cache=False)
            clock.sent.append(clock.now)
    assert [p for _, _, p, _ in site.log][1:] == [f"/apod/{d}.html" for d in ("ap200609", "ap220420", "ap230210")]
    assert min(b - a for a, b in itertools.pairwise(clock.sent)) >= 1.0  # Crawl-delay over min_interval


def test_unreachable_robots_means_do_not_crawl(site, client):
    site.faults["/robots.txt"] = "500"
    with pytest.raises(FetchError, match="robots.txt answered HTTP 500"):
        client.get_page(f"{site.url}/apod/ap200609.html")
    assert site.requests_to("/apod/ap200609.html") == 0


def test_conditional_requests_use_the_cache(site, client):
    first = client.get_page(f"{site.url}/apod/ap200609.html")
    second = client.get_page(f"{site.url}/apod/ap200609.html")
    assert not first.from_cache and second.from_cache and second.content == first.content
    headers = [h for _, _, p, h in site.log if p == "/apod/ap200609.html"]
    assert "If-None-Match" not in headers[0] and headers[1]["If-None-Match"].startswith('"')
    assert headers[1]["If-Modified-Since"] == "Fri, 10 Feb 2023 05:00:00 GMT"


def test_retry_after_is_honoured(site, tmp_path):
    site.faults["/apod/ap200609.html"] = "429_once"
    site.retry_after = "7"
    clock = FakeClock()
    with PoliteClient(min_interval=0, backoff=0.05, max_retries=2, sleep=clock.sleep, clock=clock) as c:
        c.get_page(f"{site.url}/apod/ap200609.html")
    assert site.requests_to("/apod/ap200609.html") == 2 and clock.now - 1000.0 >= 7.0  # waited as told, not longer


def test_retry_after_longer_than_allowed_fails_fast(site, tmp_path):
    site.faults["/apod/ap200609.html"] = "429"
    site.retry_after = "3600"
    with PoliteClient(min_interval=0, max_wait=60) as c, pytest.raises(FetchError, match="retry after 3600 s"):
        c.get_page(f"{site.url}/apod/ap200609.html")
    assert site.requests_to("/apod/ap200609.html") == 1


@pytest.mark.parametrize("fault", ["500_once", "drop_once", "timeout_once"])
def test_transient_faults_are_retried(site, client, fault):
    path = "/apod/image/2006/OrionMountains_Tabbush_960.jpg"
    site.faults[path] = fault
    image = client.get_image(site.url + path)
    assert image.content.startswith(b"\xff\xd8\xff")
    assert site.requests_to(path) == 2


@pytest.mark.parametrize(
    ("fault", "message", "requests"),
    [
        ("500", "HTTP 500 after 3 attempts", 3),
        ("timeout", "Timeout", 3),
        ("html", "body is HTML although served as image/jpeg", 1),
        ("loop", "too many redirects", 6),
        ("huge", "Content-Length 2 GiB is over the 64 MiB limit", 1),
    ],
)
def test_persistent_faults_fail_with_a_clear_error(site, client, fault, message, requests):
    path = "/apod/image/2006/OrionMountains_Tabbush_960.jpg"
    site.faults[path] = fault
    t0 = time.monotonic()
    with pytest.raises(FetchError, match=message):
        client.get_image(site.url + path)
    assert site.requests_to(path) == requests
    assert time.monotonic() - t0 < 15


def test_body_over_the_limit_while_streaming(site, tmp_path):
    with (
        PoliteClient(min_interval=0, max_bytes=1000) as c,
        pytest.raises(FetchError, match="over the 1000 bytes limit"),
    ):
        c.get_image(f"{site.url}/apod/image/2006/OrionMountains_Tabbush_960.jpg")


def test_non_image_content_type_is_refused(site, client):
    with pytest.raises(FetchError, match="served as 'text/html', not an image"):
        client.get_image(f"{site.url}/apod/ap200609.html")


@pytest.mark.parametrize("fault", ["trickle", "trickle_body"])
def test_one_deadline_per_request_headers_included(site, fault):
    """A server sending a byte every 0.1 s never trips a per-read timeout; the request's deadline stops it."""
    site.faults["/apod/ap200609.html"] = fault
    with PoliteClient(min_interval=0, max_retries=0, timeout=0.5) as c:
        start = time.monotonic()
        with pytest.raises(FetchError, match="within 0.5 s"):
            c.get_page(f"{site.url}/apod/ap200609.html", cache=False)
        assert time.monotonic() - start < 1.0


@pytest.mark.parametrize("fault", ["trickle", "endless"])
def test_robots_txt_has_the_same_deadline_and_a_size_cap(site, fault):
    site.faults["/robots.txt"] = fault
    with PoliteClient(min_interval=0, max_retries=0, timeout=0.75) as c:
        start = time.monotonic()
        if fault == "trickle":
            with pytest.raises(FetchError, match="robots.txt unreachable"):
                c.get_page(f"{site.url}/apod/ap200609.html")
            assert site.requests_to("/apod/ap200609.html") == 0  # unreachable robots.txt: do not crawl
        else:
            page = c.get_page(f"{site.url}/apod/ap200609.html")  # the first 512 KiB are read and obeyed
            assert page.status == 200
            assert site.sent["/robots.txt"] < 32 * 1024**2  # of 3 GiB offered; the rest never read
        assert time.monotonic() - start < 1.5


@pytest.mark.parametrize(
    "fault, message",
    [
        ("gzip_gzip_bomb", "Content-Encoding 'gzip, gzip' refused"),
        ("br", "Content-Encoding 'br' refused"),
        ("gzip_bomb", "over the 1 MiB limit"),
    ],
)
def test_decompression_bombs_are_stopped_as_they_inflate(site, fault, message):
    """3 KB of stacked gzip decodes to 512 MB: refused before inflating, and one layer stops at the cap."""
    import tracemalloc

    from tests.ingestion.archive_site import bomb

    bomb(fault)  # made before measuring: the server's memory is not the client's
    site.faults["/apod/image/bomb.jpg"] = fault
    with PoliteClient(min_interval=0, max_retries=0, max_bytes=2**20) as c:
        tracemalloc.start()
        try:
            with pytest.raises(FetchError, match=message):
                c.get_image(f"{site.url}/apod/image/bomb.jpg")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_read_capped_decodes_gzip_deflate_and_concatenated_members():
    import gzip
    import zlib

    import httpx

    from astroclassify.net.http import read_capped

    body = bytes(range(256)) * 4000
    raw_deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    cases = {
        "gzip": gzip.compress(body[:500_000]) + gzip.compress(body[500_000:]),  # two members: one body
        "deflate": zlib.compress(body),
        "Deflate": raw_deflate.compress(body) + raw_deflate.flush(),  # raw deflate, as some servers send it
        "identity": body,
    }
    for encoding, sent in cases.items():
        response = httpx.Response(200, headers={"Content-Encoding": encoding}, stream=httpx.ByteStream(sent))
        assert read_capped(response, len(body)) == body, encoding
        response = httpx.Response(200, headers={"Content-Encoding": encoding}, stream=httpx.ByteStream(sent))
        assert read_capped(response, len(body) - 1) is None, encoding
    with pytest.raises(httpx.DecodingError, match="corrupt"):
        read_capped(
            httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip")), 100
        )
