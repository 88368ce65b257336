"""NASA's Astronomy Picture of the Day, from its HTML site or its official JSON API.

The HTML site (``https://apod.nasa.gov/apod/``) has one page per day, ``apYYMMDD.html``, and
``archivepix.html`` lists every day as ``2023 February 10:  <a href="ap230210.html">Title</a>``.
Day pages have kept one shape since 1995, with variations the parser must survive:

- the date line: ``2020 June 9`` (since ~1996) or ``Today's Picture: June 22, 1995``;
- the media: ``<a href=HIRES><IMG SRC=IMAGE></a>`` (the link may instead go to a web page,
  e.g. a video site, or be absent: ``<button><img></button>``), an ``<iframe>`` (YouTube,
  Vimeo, interactive pages), or a ``<video><source></video>``;
- the title: the bold line right before the credit label (``Image Credit & Copyright:``,
  ``Picture Credit:``, ``Video Credit:``, ``Credits:``, ...), then ``Explanation:``.

Pages without a date line and an ``Explanation:`` (calendars, FAQ, index pages) raise
``NotAPicturePage``: a crawler skips them without calling them failures.

The API (``https://api.nasa.gov/planetary/apod``) takes ``api_key``, ``date``,
``start_date``/``end_date``, ``count`` and ``thumbs``; errors come as ``{"code", "msg"}``
(400, 404) or ``{"error": {"code", "message"}}`` (403 key problems, 429 rate limit).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterator
from urllib.parse import urljoin

from bs4 import BeautifulSoup, Tag

from astroclassify.errors import IngestError
from astroclassify.ingest.http import FetchError, PoliteClient
from astroclassify.ingest.records import ArchiveItem, NotAPicturePage, Stub

__all__ = [
    "API_URL",
    "BASE_URL",
    "ApodApiSource",
    "ApodHtmlSource",
    "api_error_message",
    "parse_api_item",
    "parse_archive",
    "parse_day",
]

log = logging.getLogger(__name__)

BASE_URL = "https://apod.nasa.gov/apod/"
API_URL = "https://api.nasa.gov/planetary/apod"
FIRST_DAY = dt.date(1995, 6, 16)
LICENSE = "NASA APOD: specific rights apply (https://apod.nasa.gov/apod/lib/about_apod.html#srapply)"

_MONTHS = "January|February|March|April|May|June|July|August|September|October|November|December"
_DATE_NEW = re.compile(rf"\b(\d{{4}})\s+({_MONTHS})\s+(\d{{1,2}})\b")
_DATE_OLD = re.compile(rf"\b({_MONTHS})\s+(\d{{1,2}}),\s*(\d{{4}})\b")
_DAY_URL = re.compile(r"ap(\d{2})(\d{2})(\d{2})\.html$")
_CREDIT = re.compile(r"^\s*(?:[\w ]+\s)?credits?\b.*:\s*$|^\s*copyright\s*:\s*$", re.I)
_IMAGE_EXT = re.compile(r"\.(jpe?g|png|gif|tiff?|webp)(\?.*)?$", re.I)
_VIDEO_HOSTS = ("youtube.com", "youtu.be", "vimeo.com", ".mp4", ".webm", ".mov")


def parse_archive(html: str | bytes, base_url: str = BASE_URL) -> list[tuple[dt.date, str, str]]:
    """``(date, page_url, title)`` for every day linked from ``archivepix.html``, newest first."""
    soup = BeautifulSoup(html, "html.parser")
    days = []
    for a in soup.find_all("a", href=_DAY_URL):
        date = _date_from_url(a["href"])
        if date is not None:
            days.append((date, urljoin(base_url, a["href"]), _clean(a.get_text())))
    days.sort(key=lambda d: d[0], reverse=True)
    return days


def parse_day(html: str | bytes, page_url: str) -> ArchiveItem:
    """One day's page → ArchiveItem; raises NotAPicturePage for calendars, FAQ and index pages."""
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript"]):
        tag.decompose()
    bolds = soup.find_all("b")
    explanation_b = next((b for b in bolds if _clean(b.get_text(" ")).lower().startswith("explanation")), None)
    text = _clean(soup.get_text(" "))
    date = _date_from_url(page_url) or _date_from_text(text)
    if explanation_b is None or date is None:
        raise NotAPicturePage(f"{page_url}: not an APOD picture page (no date line and Explanation)")

    before = bolds[: bolds.index(explanation_b)]
    credit_b = next((b for b in before if _CREDIT.match(_clean(b.get_text(" ")))), None)
    title = ""
    if credit_b is not None:
        earlier = [
            b
            for b in before[: before.index(credit_b)]
            if _clean(b.get_text(" ")) and not _clean(b.get_text(" ")).endswith(":")
        ]
        title = _clean(earlier[-1].get_text(" ")) if earlier else ""
    if not title:
        title = _title_from_head(soup)

    media_type, image_url, hires_url, video_url = _media(soup, explanation_b, page_url)
    credit_label = _clean(credit_b.get_text(" ")) if credit_b is not None else ""
    credit = _between(text, credit_label, "Explanation:") if credit_label else ""
    explanation = _explanation(explanation_b)
    return ArchiveItem(
        source="apod",
        key=f"apod:{date.isoformat()}",
        page_url=page_url,
        title=title,
        media_type=media_type,
        date=date,
        image_url=image_url,
        hires_url=hires_url,
        video_url=video_url,
        credit=credit,
        license=f"© {credit}" if "copyright" in credit_label.lower() and credit else LICENSE,
        explanation=explanation,
    )


def parse_api_item(body: dict) -> ArchiveItem:
    """One object of the API's answer → ArchiveItem (``copyright`` absent means NASA / public)."""
    try:
        date = dt.date.fromisoformat(body["date"])
    except (KeyError, TypeError, ValueError):
        raise IngestError(f"APOD API item without a valid date: {str(body)[:200]}") from None
    media_type = body.get("media_type") if body.get("media_type") in ("image", "video") else "other"
    url = body.get("url")
    copyright_ = _clean(body.get("copyright") or "")
    return ArchiveItem(
        source="apod",
        key=f"apod:{date.isoformat()}",
        page_url=urljoin(BASE_URL, f"ap{date:%y%m%d}.html"),
        title=_clean(body.get("title") or ""),
        media_type=media_type,
        date=date,
        image_url=url if media_type == "image" else None,
        hires_url=body.get("hdurl") if media_type == "image" else None,
        video_url=url if media_type == "video" else None,
        thumbnail_url=body.get("thumbnail_url"),
        credit=copyright_,
        license=f"© {copyright_}" if copyright_ else LICENSE,
        explanation=_clean(body.get("explanation") or ""),
    )


def api_error_message(status: int, body: object) -> str:
    """The API's own words for an error body, in either of its two shapes."""
    if isinstance(body, dict):
        if isinstance(body.get("error"), dict):
            err = body["error"]
            return f"APOD API {status} {err.get('code', '')}: {err.get('message', '')}".strip()
        if "msg" in body:
            return f"APOD API {status}: {body['msg']}"
    return f"APOD API {status}: {str(body)[:200]}"


class ApodHtmlSource:
    """Days from the HTML site: the archive index for the list, one page per day."""

    name = "apod"

    def __init__(self, client: PoliteClient, base_url: str = BASE_URL) -> None:
        self.client = client
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"

    def discover(self, since: dt.date | None = None, until: dt.date | None = None) -> Iterator[Stub]:
        page = self.client.get_page(urljoin(self.base_url, "archivepix.html"))
        for date, url, title in parse_archive(page.content, page.url):
            if (since is None or date >= since) and (until is None or date <= until):
                yield Stub(key=f"apod:{date.isoformat()}", page_url=url, title=title, date=date)

    def fetch(self, stub: Stub) -> ArchiveItem:
        page = self.client.get_page(stub.page_url)
        return parse_day(page.content, stub.page_url)


class ApodApiSource:
    """Days from the official API, one date range per request (at most ``window`` days), newest first."""

    name = "apod"

    def __init__(
        self, client: PoliteClient, api_key: str = "DEMO_KEY", api_url: str = API_URL, window: int = 30, count: int = 0
    ) -> None:
        self.client = client
        self.count = count
        self.api_key = api_key
        self.api_url = api_url
        self.window = window

    def discover(self, since: dt.date | None = None, until: dt.date | None = None) -> Iterator[Stub]:
        """Days from ``since`` to ``until`` (``date=`` for one day, ranges of ``window`` days), or ``count`` random days."""
        if self.count:
            requests = [{"count": str(self.count)}]
        else:
            until = until or dt.date.today()
            since = since or until - dt.timedelta(days=self.window - 1)
            requests = []
            end = until
            while end >= since:
                start = max(since, end - dt.timedelta(days=self.window - 1))
                one_day = {"date": start.isoformat()}
                requests.append(
                    one_day if start == end else {"start_date": start.isoformat(), "end_date": end.isoformat()}
                )
                end = start - dt.timedelta(days=1)
        for params in requests:
            items = self._get({"api_key": self.api_key, "thumbs": "true", **params})
            for item in sorted(items, key=lambda i: i.date, reverse=True):
                yield Stub(key=item.key, page_url=item.page_url, title=item.title, date=item.date, item=item)

    def fetch(self, stub: Stub) -> ArchiveItem:
        return stub.item

    def _get(self, params: dict) -> list[ArchiveItem]:
        try:
            r = self.client.get_json(self.api_url, params=params, ok_statuses=(200, 400, 403, 404, 429))
        except FetchError as exc:
            raise IngestError(f"APOD API: {exc}") from None
        try:
            body = r.json()
        except ValueError:
            raise IngestError(f"APOD API answered HTTP {r.status} with a body that is not JSON") from None
        if r.status == 404:  # "No data available for date": a gap, not a failure
            log.info("%s", api_error_message(r.status, body))
            return []
        if r.status != 200:
            hint = " (use your own key: --api-key or ASTROCLASSIFY_APOD_API_KEY)" if r.status in (403, 429) else ""
            raise IngestError(api_error_message(r.status, body) + hint)
        items = body if isinstance(body, list) else [body]
        return [parse_api_item(b) for b in items if isinstance(b, dict)]


def _media(soup: BeautifulSoup, stop: Tag, page_url: str) -> tuple[str, str | None, str | None, str | None]:
    """(media_type, image_url, hires_url, video_url) from the first media element before ``stop``."""
    for el in soup.find_all(["img", "iframe", "video", "embed", "object"]):
        if stop in el.parents or _after(el, stop):
            break
        if el.name == "img":
            src = el.get("src") or ""
            if not src or src.endswith(("apod.gif",)):
                continue
            image = urljoin(page_url, src.strip())
            link = el.find_parent("a")
            href = link.get("href", "").strip() if link else ""
            hires = urljoin(page_url, href) if href and _IMAGE_EXT.search(href) else None
            return "image", image, hires or image, None
        if el.name == "video":
            source = el.find("source")
            src = el.get("src") or (source.get("src") if source else "")
            return "video", None, None, urljoin(page_url, src) if src else None
        src = el.get("src") or el.get("data") or ""
        url = urljoin(page_url, src) if src else None
        return ("video" if any(h in (src or "") for h in _VIDEO_HOSTS) else "other"), None, None, url
    return "other", None, None, None


def _after(el: Tag, stop: Tag) -> bool:
    return stop in el.find_all_previous("b")


def _date_from_url(url: str) -> dt.date | None:
    m = _DAY_URL.search(url)
    if not m:
        return None
    yy, mm, dd = (int(g) for g in m.groups())
    try:
        return dt.date(1900 + yy if yy >= 95 else 2000 + yy, mm, dd)
    except ValueError:
        return None


def _date_from_text(text: str) -> dt.date | None:
    for pattern, order in ((_DATE_NEW, (0, 1, 2)), (_DATE_OLD, (2, 0, 1))):
        m = pattern.search(text)
        if m:
            year, month, day = (m.groups()[i] for i in order)
            try:
                return dt.datetime.strptime(f"{year} {month} {day}", "%Y %B %d").date()
            except ValueError:
                continue
    return None


def _title_from_head(soup: BeautifulSoup) -> str:
    head = _clean(soup.title.get_text()) if soup.title else ""
    return re.split(r"\s[-–]\s", head, maxsplit=1)[-1] if re.match(r"APOD:", head) else head


def _explanation(label: Tag) -> str:
    """The text after the ``Explanation:`` label, up to the next centred block or rule."""
    parts = []
    for el in label.next_elements:
        if isinstance(el, Tag):
            if el.name in ("center", "hr", "table"):
                break
        elif el.parent is not label:
            parts.append(str(el))
    return _clean(" ".join(parts))


def _between(text: str, start: str, end: str) -> str:
    head, _, rest = text.partition(start)
    return _clean(rest.split(end, 1)[0]).strip(" ;,") if rest else ""


def _clean(s: str) -> str:
    """Collapse whitespace, and the spaces that joining tag texts puts before punctuation."""
    s = re.sub(r"\s+", " ", s).strip()
    return re.sub(r"\(\s+", "(", re.sub(r"\s+([;,.:)!?])", r"\1", s))
