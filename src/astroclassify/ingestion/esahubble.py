"""The ESA/Hubble image archive (esahubble.org), with its categories as weak labels.

How the live site is structured (djangoplicity; the test server imitates exactly this):

- Category listings: ``/images/archive/category/<category>/page/<n>/`` (``galaxies``,
  ``nebulae``, ``starclusters``, ``stars``, ``solarsystem``, ``cosmology``, ``exoplanets``,
  ``illustrations``, ...), 50 images a page, newest first. The images are not ``<a>`` lists but
  a script block: ``var images = [{id: 'potw2420a', title: '...', width: 6000, height: 4000,
  src: 'https://cdn.esahubble.org/archives/images/thumb300y/potw2420a.jpg',
  url: '/images/potw2420a/', potw: '...'}, ...];``. Past the last page the site answers 404.
- Image pages: ``/images/<id>/`` with the title in ``<h1>``, the caption in
  ``<div class="description">``, the credit in ``<div class="credit">``, an "About the Image"
  table (``<td class="title">Release date:</td><td>25 April 2005, 15:00</td>``, ``Category:``),
  and download links ``https://cdn.esahubble.org/archives/images/<size>/<id>.<ext>`` for the
  sizes ``original`` (TIFF), ``large``, ``publicationjpg``, ``screen`` (1280 px), ``wallpaper*``
  and ``thumb*``.

Every ESA/Hubble image is CC BY 4.0 with the credit line given on its page.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterator
from urllib.parse import urljoin, urlsplit

from bs4 import BeautifulSoup

from astroclassify.errors import ConfigError
from astroclassify.ingestion.sources import (
    ArchiveItem,
    NotAPicturePage,
    Source,
    SourceOptions,
    Stub,
    tag_attr,
)
from astroclassify.net.http import FetchError, PoliteClient
from astroclassify.net.urls import http_url

__all__ = ["BASE_URL", "CATEGORIES", "SIZES", "EsaHubbleSource", "parse_image_page", "parse_listing"]

log = logging.getLogger(__name__)

BASE_URL = "https://esahubble.org/"
CATEGORIES = (
    "galaxies",
    "nebulae",
    "starclusters",
    "stars",
    "solarsystem",
    "cosmology",
    "exoplanets",
    "illustrations",
    "quasars",
    "anniversary",
    "spacecraft",
)
SIZES = ("screen", "large", "publicationjpg", "original", "wallpaper1", "thumb700x")
LICENSE = "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)"

_ENTRY = re.compile(r"\{[^{}]*?\bid:\s*'([A-Za-z0-9_-]+)'[^{}]*?\}", re.S)
_FIELD = re.compile(r"\b(title|url|src):\s*'((?:[^'\\]|\\.)*)'")
_IMAGE_ID = re.compile(r"^/images/([A-Za-z0-9_-]+)/?$")
_DOWNLOAD = re.compile(r"/archives/images/([a-z0-9]+)/([A-Za-z0-9_-]+)\.(jpg|jpeg|tif|tiff|png)$", re.I)


def parse_listing(html: str | bytes, page_url: str) -> list[tuple[str, str, str]]:
    """``(image id, page URL, title)`` for each image on a category listing page."""
    text = html.decode("utf-8", "replace") if isinstance(html, bytes) else html
    found: dict[str, tuple[str, str, str]] = {}
    for m in _ENTRY.finditer(text):
        fields = dict(_FIELD.findall(m.group(0)))
        ident = m.group(1)
        url = http_url(urljoin(page_url, fields.get("url") or f"/images/{ident}/"))
        if url is None:  # a listing's data never becomes a link we follow
            continue
        found.setdefault(ident, (ident, url, _unescape(fields.get("title", ""))))
    if not found:  # a plainer page (or a future redesign): links to image pages
        soup = BeautifulSoup(text, "html.parser")
        for a in soup.find_all("a", href=True):
            href = tag_attr(a, "href")
            link = _IMAGE_ID.match(urlsplit(href).path)
            url = http_url(urljoin(page_url, href))
            if link and url and link.group(1) not in ("archive", "viewall"):
                found.setdefault(link.group(1), (link.group(1), url, " ".join(a.get_text().split())))
    return list(found.values())


def parse_image_page(html: str | bytes, page_url: str, *, size: str = "screen", category: str = "") -> ArchiveItem:
    """An image page → ArchiveItem with the download URL of ``size`` (falling back to a larger JPEG)."""
    soup = BeautifulSoup(html, "html.parser")
    h1 = soup.find("h1")
    downloads: dict[str, str] = {}
    ident = ""
    for a in soup.find_all("a", href=True):
        href = tag_attr(a, "href")
        m = _DOWNLOAD.search(href)
        url = http_url(urljoin(page_url, href))
        if m and url and m.group(1) not in downloads:
            downloads[m.group(1)] = url
            ident = ident or m.group(2)
    if h1 is None or not downloads:
        raise NotAPicturePage(f"{page_url}: not an ESA/Hubble image page (no title or download links)")
    info = _about_table(soup)
    ident = info.get("id") or ident
    credit_div = soup.find("div", class_="credit")
    description = soup.find("div", class_="description")
    image_url = next(
        (
            downloads[s]
            for s in (size, "screen", "large", "publicationjpg")
            if s in downloads and not downloads[s].endswith((".tif", ".tiff"))
        ),
        None,
    )
    hires = downloads.get("original") or downloads.get("large") or image_url
    return ArchiveItem(
        source="esahubble",
        key=f"esahubble:{ident}",
        page_url=page_url,
        title=" ".join(h1.get_text().split()),
        media_type="image" if image_url else "other",
        date=_release_date(info.get("release date", "")),
        image_url=image_url,
        hires_url=hires,
        credit=" ".join(credit_div.get_text(" ").split()) if credit_div else "ESA/Hubble",
        license=LICENSE,
        explanation=" ".join(description.get_text(" ").split()) if description else "",
        category=category or info.get("category", "").split(",")[0].strip().lower(),
    )


class EsaHubbleSource(Source):
    """Images of one or more categories, newest first, page by page."""

    name = "esahubble"

    def __init__(
        self,
        client: PoliteClient,
        categories: tuple[str, ...] = ("galaxies", "nebulae"),
        base_url: str = BASE_URL,
        size: str = "screen",
        max_pages: int = 1000,
        stop_after_known: int | None = None,
    ) -> None:
        super().__init__()
        self.client = client
        self.categories = categories
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.size = size
        self.max_pages = max_pages
        # Listings are newest first: after this many images in a row that are already stored, the
        # rest of a category is too (how ``watch`` avoids re-reading the whole archive each poll).
        self.stop_after_known = stop_after_known
        # Dates are only on image pages: after this many images older than --since in one
        # category (the pipeline reports them through ``note_older``), the rest is older too.
        self.stop_after_older = 10
        self._older: dict[str, int] = {}

    def discover(self, since: dt.date | None = None, until: dt.date | None = None) -> Iterator[Stub]:
        """Listing entries; dates are only on image pages, so ``since``/``until`` apply after fetching."""
        for category in self.categories:
            yield from self._category(category)

    def _category(self, category: str) -> Iterator[Stub]:
        known_in_a_row = 0
        for page in range(1, self.max_pages + 1):
            url = urljoin(self.base_url, f"images/archive/category/{category}/page/{page}/")
            try:
                listing = self.client.get_page(url)
            except FetchError as exc:
                if exc.status == 404:  # past the last page
                    return
                raise
            entries = parse_listing(listing.content, listing.url)
            if not entries:
                return
            for ident, page_url, title in entries:
                if self._older.get(category, 0) >= self.stop_after_older:
                    log.info("%s: %d images older than requested; stopping", category, self._older[category])
                    return
                key = f"esahubble:{ident}"
                known_in_a_row = known_in_a_row + 1 if key in self.known else 0
                if self.stop_after_known and known_in_a_row > self.stop_after_known:
                    log.info("%s: %d stored images in a row; the rest is older", category, known_in_a_row - 1)
                    return
                yield Stub(key=key, page_url=page_url, title=title, category=category)

    def note_older(self, stub: Stub) -> None:
        self._older[stub.category] = self._older.get(stub.category, 0) + 1

    def fetch(self, stub: Stub) -> ArchiveItem:
        page = self.client.get_page(stub.page_url)
        return parse_image_page(page.content, stub.page_url, size=self.size, category=stub.category)


def make_esahubble(client: PoliteClient, options: SourceOptions) -> Source:
    unknown = [c for c in options.categories if c not in CATEGORIES]
    if unknown:
        raise ConfigError(f"unknown ESA/Hubble categories {unknown}; choose from {', '.join(CATEGORIES)}")
    if options.size not in SIZES:
        raise ConfigError(f"--size must be one of {', '.join(SIZES)}; got {options.size!r}")
    return EsaHubbleSource(
        client,
        tuple(options.categories or ("galaxies", "nebulae")),
        options.base_url or BASE_URL,
        options.size,
        stop_after_known=50 if options.watch else None,  # one listing page of known images
    )


def _about_table(soup: BeautifulSoup) -> dict[str, str]:
    info = {}
    for td in soup.find_all("td", class_="title"):
        value = td.find_next_sibling("td")
        if value is not None:
            info[td.get_text().strip().rstrip(":").lower()] = " ".join(value.get_text(" ").split())
    return info


def _release_date(text: str) -> dt.date | None:
    m = re.match(r"(\d{1,2} \w+ \d{4})", text.strip())
    if not m:
        return None
    try:
        return dt.datetime.strptime(m.group(1), "%d %B %Y").date()
    except ValueError:
        return None


def _unescape(s: str) -> str:
    import html

    return html.unescape(s.replace("\\'", "'"))
