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

from bs4 import BeautifulSoup, Comment, Tag

from astroclassify.errors import IngestError
from astroclassify.ingestion.sources import (
    ArchiveItem,
    NotAPicturePage,
    NothingFound,
    Source,
    SourceOptions,
    Stub,
    tag_attr,
)
from astroclassify.net.http import FetchError, PoliteClient
from astroclassify.net.urls import http_url

__all__ = [
    "API_URL",
    "BASE_URL",
    "MIRRORS",
    "ApodApiSource",
    "ApodHtmlSource",
    "api_error_message",
    "parse_api_item",
    "parse_archive",
    "parse_day",
]

log = logging.getLogger(__name__)

BASE_URL = "https://apod.nasa.gov/apod/"
# Mirrors that keep the classic layout, tried in turn when the main site cannot be read (see config.py).
MIRRORS = ("https://apod.com/apod/",)
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
_VIDEO_LINKS = _VIDEO_HOSTS + (".mpg", ".mpeg", ".avi", ".m4v", ".ogv", "/video")
_YOUTUBE_ID = re.compile(
    r"(?:youtube(?:-nocookie)?\.com/(?:embed/|watch\?(?:.*&)?v=|v/|shorts/)|youtu\.be/)([\w-]{6,})"
)
_ROLE = re.compile(
    r"^(?:music|text|processing|data|animation|illustration|video|image|audio|narration|editing|editor|song|sound|software|visualization)\b[^:]{0,30}:",
    re.I,
)
_BREAKS = frozenset(
    {"br", "p", "div", "center", "li", "ul", "ol", "table", "tr", "td", "h1", "h2", "h3", "hr", "blockquote"}
)


def parse_archive(html: str | bytes, base_url: str = BASE_URL) -> list[tuple[dt.date, str, str]]:
    """``(date, page_url, title)`` for every day linked from an archive index, newest first.

    Links that are not http(s) once resolved (``javascript:...ap240106.html``) are dropped:
    a page's data never becomes a URL we fetch or show.
    """
    soup = BeautifulSoup(html, "html.parser")
    days: dict[dt.date, tuple[dt.date, str, str]] = {}
    for a in soup.find_all("a", href=_DAY_URL):
        href = tag_attr(a, "href")
        url = http_url(urljoin(base_url, href))
        date = _date_from_url(href)
        if url is None or date is None:
            log.warning("archive index: ignoring link %r", href[:100])
            continue
        days.setdefault(date, (date, url, _clean(_text(a))))
    return sorted(days.values(), key=lambda d: d[0], reverse=True)


def full_archive_url(html: str | bytes, base_url: str) -> str | None:
    """The link to the archive of every day (``archivepixFull.html``) that the recent index carries."""
    soup = BeautifulSoup(html, "html.parser")
    a = soup.find("a", href=re.compile(r"archivepixfull\.html$", re.I))
    return http_url(urljoin(base_url, tag_attr(a, "href"))) if a else None


def parse_day(html: str | bytes, page_url: str) -> ArchiveItem:
    """One day's page → ArchiveItem.

    Raises NotAPicturePage for calendars, FAQ and index pages, and IngestError for a day's
    page (``apYYMMDD.html``) whose layout is not APOD's: that is a failure to retry or to
    report (the site moved), not a page to skip for ever.
    """
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript"]):
        tag.decompose()
    order = {id(node): i for i, node in enumerate(soup.descendants)}
    bolds = soup.find_all("b")
    explanation_b = next((b for b in bolds if _clean(b.get_text(" ")).lower().startswith("explanation")), None)
    # Some pages have the label without bold: the text is the marker then, as for the official parser.
    marker = explanation_b or soup.find(string=re.compile(r"Explanation:"))
    text = _clean(_text(soup))
    date = _date_from_url(page_url) or _date_from_text(text)
    media_type, image_url, hires_url, video_url = _media(soup, marker, page_url, order)
    if marker is None or date is None:
        if _DAY_URL.search(page_url) and (date is None or media_type == "other"):
            raise IngestError(
                f"{page_url}: not APOD's page layout (no date line, picture and Explanation); "
                "if the site moved, use --base-url with a mirror that keeps the classic layout, or --api"
            )
        if date is None or (marker is None and not _DAY_URL.search(page_url)):
            raise NotAPicturePage(f"{page_url}: not an APOD picture page (no date line and Explanation)")
    before = [b for b in bolds if marker is None or order[id(b)] < order[id(marker)]]
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
    credit_label = _clean(credit_b.get_text(" ")) if credit_b is not None else ""
    credit = _between(text, credit_label, "Explanation:") if credit_label else ""
    holder = copyright_holder(credit) if "copyright" in credit_label.lower() else ""
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
        thumbnail_url=youtube_thumbnail(video_url),
        credit=credit,
        license=f"© {holder}" if holder else LICENSE,
        explanation=_explanation(marker) if marker is not None else "",
    )


def copyright_holder(credit: str) -> str:
    """Who holds the copyright in a credit line: the part before any other role.

    ``"Mark Gee; Music: Tenderness (Dan Phillipson)"`` → ``"Mark Gee"``: the © belongs to the
    image's author, not to the music or text credited after it.
    """
    parts = [p.strip() for p in re.split(r";\s*", credit) if p.strip()]
    kept = [p for p in parts if not _ROLE.match(p)]
    return "; ".join(kept[:1]) if kept else ""


def youtube_thumbnail(video_url: str | None) -> str | None:
    """A still for a YouTube video, at the address the official APOD API gives for ``thumbs``."""
    if not video_url:
        return None
    m = _YOUTUBE_ID.search(video_url)
    return f"https://img.youtube.com/vi/{m.group(1)}/0.jpg" if m else None


def parse_api_item(body: dict) -> ArchiveItem:
    """One object of the API's answer → ArchiveItem (``copyright`` absent means NASA / public)."""
    try:
        date = dt.date.fromisoformat(body["date"])
    except (KeyError, TypeError, ValueError):
        raise IngestError(f"APOD API item without a valid date: {str(body)[:200]}") from None
    media_type = str(body["media_type"]) if body.get("media_type") in ("image", "video") else "other"
    url = http_url(body.get("url"))
    copyright_ = _clean(body.get("copyright") or "")
    holder = copyright_holder(copyright_)
    return ArchiveItem(
        source="apod",
        key=f"apod:{date.isoformat()}",
        page_url=urljoin(BASE_URL, f"ap{date:%y%m%d}.html"),
        title=_clean(body.get("title") or ""),
        media_type=media_type,
        date=date,
        image_url=url if media_type == "image" else None,
        hires_url=http_url(body.get("hdurl")) if media_type == "image" else None,
        video_url=url if media_type == "video" else None,
        thumbnail_url=http_url(body.get("thumbnail_url")) or youtube_thumbnail(url if media_type == "video" else None),
        credit=copyright_,
        license=f"© {holder}" if holder else LICENSE,
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


class ApodHtmlSource(Source):
    """Days from the HTML site: the archive index for the list, one page per day.

    ``archivepix.html`` lists only the days since 2015; older ranges come from the full
    archive it links to (``archivepixFull.html``), or, where that cannot be read, from day
    pages named by their dates (every day since 1995-06-16 has ``apYYMMDD.html``).

    The site can move (apod.nasa.gov moved to science.nasa.gov/apod in 2026, with another
    layout): ``mirrors`` keeping the classic layout are tried in turn when the main site
    cannot be read or answers with a page that is not a classic index.
    """

    name = "apod"

    def __init__(self, client: PoliteClient, base_url: str = BASE_URL, mirrors: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.client = client
        self.roots = [r if r.endswith("/") else r + "/" for r in (base_url, *mirrors)]
        self._guessed: set[str] = set()  # keys of days named from their date, not read from an index

    def discover(self, since: dt.date | None = None, until: dt.date | None = None) -> Iterator[Stub]:
        page, days = self._index()
        oldest, newest = days[-1][0], days[0][0]
        if (since is None or since < oldest) and (until is None or until >= FIRST_DAY):
            days = days + self._older_days(page, since, min(until or oldest, oldest - dt.timedelta(days=1)))
        chosen = [d for d in days if (since is None or d[0] >= since) and (until is None or d[0] <= until)]
        if not chosen:
            span = f"{since or FIRST_DAY} and {until or newest}"
            raise NothingFound(
                f"no APOD day between {span}: the archive at {page.url} lists {days[-1][0]} to {newest} "
                f"(APOD began on {FIRST_DAY})"
            )
        for date, url, title in chosen:
            yield Stub(key=f"apod:{date.isoformat()}", page_url=url, title=title, date=date)

    def fetch(self, stub: Stub) -> ArchiveItem:
        try:
            page = self.client.get_page(stub.page_url)
        except FetchError as exc:
            if stub.key in self._guessed and exc.status == 404:
                raise NotAPicturePage(f"{stub.page_url}: no APOD page for this date") from None
            raise
        if page.url != stub.page_url and not _DAY_URL.search(page.url):
            raise IngestError(
                f"{stub.page_url} redirected to {page.url}, whose layout astroclassify does not know; "
                "use --base-url with a mirror that keeps the classic layout, or --api"
            )
        return parse_day(page.content, page.url)

    def _index(self):
        """The recent archive index, from the first root that serves a classic one."""
        problems = []
        for root in self.roots:
            url = urljoin(root, "archivepix.html")
            try:
                page = self.client.get_page(url)
            except FetchError as exc:
                problems.append(f"{url}: {exc}".replace(f"{url}: {url}: ", f"{url}: "))
                continue
            days = parse_archive(page.content, page.url)
            if days:
                self.roots = [root]  # day pages come from where the index was read
                return page, days
            moved = f" (redirected to {page.url})" if page.url != url else ""
            problems.append(f"{url}{moved} lists no days: not the classic archive layout")
        raise IngestError(
            "APOD's archive could not be read: "
            + "; ".join(problems)
            + ". The site may have moved (apod.nasa.gov moved to science.nasa.gov/apod in 2026, with a new "
            "layout): use --base-url with a mirror that keeps the classic layout, list mirrors in "
            "ASTROCLASSIFY_APOD_MIRRORS, or use --api"
        )

    def _older_days(self, recent, since: dt.date | None, until: dt.date) -> list[tuple[dt.date, str, str]]:
        """Days before the recent index: from the full archive, else named by their dates."""
        start = max(since or FIRST_DAY, FIRST_DAY)
        if until < start:
            return []
        full_url = full_archive_url(recent.content, recent.url) or urljoin(recent.url, "archivepixFull.html")
        try:
            full = self.client.get_page(full_url)
            older = [d for d in parse_archive(full.content, full.url) if d[0] <= until]
            if older:
                return older
            log.warning("%s lists no days; naming older days by their dates", full_url)
        except FetchError as exc:
            log.warning("full archive unreadable (%s); naming older days by their dates", exc)
        days = []
        date = until
        while date >= start:
            key = f"apod:{date.isoformat()}"
            self._guessed.add(key)
            days.append((date, urljoin(recent.url, f"ap{date:%y%m%d}.html"), ""))
            date -= dt.timedelta(days=1)
        return days


class ApodApiSource(Source):
    """Days from the official API, one date range per request (at most ``window`` days), newest first."""

    name = "apod"

    def __init__(
        self, client: PoliteClient, api_key: str = "DEMO_KEY", api_url: str = API_URL, window: int = 30, count: int = 0
    ) -> None:
        super().__init__()
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
            for item in sorted(items, key=lambda i: i.date or FIRST_DAY, reverse=True):
                yield Stub(key=item.key, page_url=item.page_url, title=item.title, date=item.date, item=item)

    def fetch(self, stub: Stub) -> ArchiveItem:
        assert stub.item is not None  # the API's listing carries whole items
        return stub.item

    def _get(self, params: dict) -> list[ArchiveItem]:
        try:
            r = self.client.get_json(self.api_url, params=params, ok_statuses=(200, 400, 403, 404, 429))
        except FetchError as exc:
            raise IngestError(f"APOD API: {exc}") from None
        try:
            body = r.json()
        except ValueError:
            raise IngestError(
                f"APOD API at {self.api_url} answered HTTP {r.status} with a body that is not JSON; "
                "if the API moved, give its address with --api-url or ASTROCLASSIFY_APOD_API_URL"
            ) from None
        if r.status == 404:  # "No data available for date": a gap, not a failure
            log.info("%s", api_error_message(r.status, body))
            return []
        if r.status != 200:
            hint = " (use your own key: --api-key or ASTROCLASSIFY_APOD_API_KEY)" if r.status in (403, 429) else ""
            raise IngestError(api_error_message(r.status, body) + hint)
        items = body if isinstance(body, list) else [body]
        if any(isinstance(b, dict) and _looks_like_wordpress(b) for b in items):
            raise IngestError(
                f"APOD API at {self.api_url} answered with WordPress posts, not APOD items (the 2026 "
                "science.nasa.gov endpoint has no dates, hd or thumbs); use the HTML site or an API that "
                "keeps the classic format (--api-url)"
            )
        parsed = [parse_api_item(b) for b in items if isinstance(b, dict)]
        wanted = _requested_dates(params)
        if wanted and parsed:
            inside = [i for i in parsed if i.date is not None and wanted[0] <= i.date <= wanted[1]]
            if not inside:
                raise IngestError(
                    f"APOD API at {self.api_url} ignored the dates asked for ({wanted[0]} to {wanted[1]}) and "
                    f"answered {parsed[-1].date} to {parsed[0].date}; use the HTML site for a date range"
                )
            parsed = inside
        return parsed


def make_apod(client: PoliteClient, options: SourceOptions) -> Source:
    """The JSON API with ``api`` (or ``count``); else the HTML site: ``base_url`` alone, or ``sites`` in turn."""
    if options.api or options.count:
        return ApodApiSource(client, options.api_key, options.api_url or API_URL, count=options.count)
    if options.base_url:
        return ApodHtmlSource(client, options.base_url)
    first, *rest = options.sites or (BASE_URL, *MIRRORS)
    return ApodHtmlSource(client, first, mirrors=tuple(rest))


def _looks_like_wordpress(item: dict) -> bool:
    return "date" not in item or isinstance(item.get("title"), dict) or {"slug", "link"} <= item.keys()


def _requested_dates(params: dict) -> tuple[dt.date, dt.date] | None:
    try:
        if "date" in params:
            day = dt.date.fromisoformat(params["date"])
            return day, day
        if "start_date" in params:
            return dt.date.fromisoformat(params["start_date"]), dt.date.fromisoformat(params["end_date"])
    except (KeyError, ValueError):
        pass
    return None


def _media(
    soup: BeautifulSoup, stop, page_url: str, order: dict[int, int]
) -> tuple[str, str | None, str | None, str | None]:
    """(media_type, image_url, hires_url, video_url) from the first media element before ``stop``."""
    limit = order[id(stop)] if stop is not None else len(order)
    for el in soup.find_all(["img", "iframe", "video", "embed", "object"]):
        if order[id(el)] > limit:
            break
        if el.name == "img":
            src = tag_attr(el, "src")
            image = http_url(urljoin(page_url, src)) if src else None
            if image is None or src.endswith("apod.gif"):
                continue
            link = el.find_parent("a")
            href = http_url(urljoin(page_url, tag_attr(link, "href"))) if tag_attr(link, "href") else None
            hires = href if href and _IMAGE_EXT.search(href) else None
            # A still that links to a video (an .mpg, a YouTube page): the still is what we classify.
            video = href if href and any(v in href.lower() for v in _VIDEO_LINKS) else None
            return "image", image, hires or image, video
        if el.name == "video":
            src = tag_attr(el, "src") or tag_attr(el.find("source"), "src")
            return "video", None, None, http_url(urljoin(page_url, src)) if src else None
        src = tag_attr(el, "src") or tag_attr(el, "data")
        url = http_url(urljoin(page_url, src)) if src else None
        return ("video" if any(h in (src or "") for h in _VIDEO_HOSTS) else "other"), None, None, url
    return "other", None, None, None


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
    """``APOD: 2020 June 9 - Orion over ...`` → the title; the site's generic title → "" (the index has better)."""
    head = _clean(soup.title.get_text()) if soup.title else ""
    return re.split(r"\s[-–]\s", head, maxsplit=1)[-1] if re.match(r"APOD:", head) else ""


def _text(node) -> str:
    """A node's text as a reader sees it: text runs joined as they are, block breaks as spaces.

    Joining with spaces (``get_text(" ")``) splits words where a link ends mid-word: APOD
    writes ``<a>Odd Radio Circle</a>s`` and ``<a>Orion</a>-encircling``.
    """
    parts = []
    for el in node.descendants if isinstance(node, Tag) else [node]:
        if isinstance(el, Tag):
            if el.name in _BREAKS:
                parts.append(" ")
        elif not isinstance(el, Comment):
            parts.append(str(el))
    return "".join(parts)


def _explanation(marker) -> str:
    """The text after the ``Explanation:`` label (bold, or in plain text), up to the next centred block or rule."""
    parts = []
    if not isinstance(marker, Tag):  # the label inside a text run: keep what follows it
        parts.append(str(marker).split("Explanation:", 1)[-1])
    for el in marker.next_elements:
        if isinstance(el, Tag):
            if el.name in ("center", "hr", "table"):
                break
            if el.name in _BREAKS:
                parts.append(" ")
        elif isinstance(marker, Tag) and el.parent is marker:
            continue
        elif not isinstance(el, Comment) and el is not marker:
            parts.append(str(el))
    return _clean("".join(parts))


def _between(text: str, start: str, end: str) -> str:
    head, _, rest = text.partition(start)
    return _clean(rest.split(end, 1)[0]).strip(" ;,") if rest else ""


def _clean(s: str) -> str:
    """Collapse whitespace, and the spaces that joining tag texts puts before punctuation."""
    s = re.sub(r"\s+", " ", s).strip()
    return re.sub(r"\(\s+", "(", re.sub(r"\s+([;,.:)!?])", r"\1", s))
