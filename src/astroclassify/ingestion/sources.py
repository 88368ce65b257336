"""The source contract: what an archive source is, what it yields, and the registry of sources.

A source lists an archive (``discover`` yields ``Stub``s, newest first) and reads one item
(``fetch`` turns a stub into an ``ArchiveItem`` with provenance). It does no decoding and
touches no database: ``pipeline.ingest`` does both. Sources register by name, as models do:

    @register_source("apod")
    def _apod(client: PoliteClient, options: SourceOptions) -> Source: ...

    source = make_source("apod", client, SourceOptions(since=...))
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from astroclassify.errors import IngestError
from astroclassify.net.urls import is_http_url

if TYPE_CHECKING:
    from astroclassify.net.http import PoliteClient

__all__ = [
    "MEDIA_TYPES",
    "SourceFactory",
    "ArchiveItem",
    "NotAPicturePage",
    "NothingFound",
    "Source",
    "SourceOptions",
    "Stub",
    "tag_attr",
]

MEDIA_TYPES = ("image", "video", "other")
URL_FIELDS = ("page_url", "image_url", "hires_url", "video_url", "thumbnail_url")


class NotAPicturePage(ValueError):
    """A page that is not a picture page (calendar, FAQ, index): recognised and skipped, not an error."""


class NothingFound(IngestError):
    """A listing was read, but it names no item in the range asked for (the message says what it has)."""


def tag_attr(tag: object, name: str) -> str:
    """An HTML attribute as one stripped string ("" when absent): BeautifulSoup may give a list."""
    value = getattr(tag, "get", lambda _: None)(name)
    if value is None:
        return ""
    return (" ".join(value) if isinstance(value, list) else str(value)).strip()


def _check_urls(record: Any) -> None:
    """Archives may only hand us http(s) links: anything else fails the item, before it is stored or shown."""
    for f in fields(record):
        value = getattr(record, f.name)
        if f.name in URL_FIELDS and value is not None and not is_http_url(value):
            raise IngestError(f"{f.name} {value[:100]!r} is not an http(s) URL; refused")


@dataclass(frozen=True)
class ArchiveItem:
    """One item of a public archive, as its pages describe it.

    ``key`` is stable across runs (``apod:2020-06-09``, ``esahubble:heic0506a``): it is how a
    re-run knows what it already has. ``image_url`` is what gets downloaded and classified;
    ``hires_url`` is the largest version the archive offers (recorded, not fetched by default).
    """

    source: str
    key: str
    page_url: str
    title: str
    media_type: str  # image | video | other
    date: dt.date | None = None
    image_url: str | None = None
    hires_url: str | None = None
    video_url: str | None = None
    thumbnail_url: str | None = None  # video days: a still the archive provides
    credit: str = ""
    license: str = ""
    explanation: str = ""
    category: str = ""  # the archive's own category: a weak label

    def __post_init__(self) -> None:
        _check_urls(self)

    def to_json(self) -> dict:
        out = asdict(self)
        out["date"] = self.date.isoformat() if self.date else None
        return out


@dataclass(frozen=True)
class Stub:
    """An item as a listing names it, before its page is fetched (``item`` when the listing says it all)."""

    key: str
    page_url: str
    title: str = ""
    date: dt.date | None = None
    category: str = ""
    item: ArchiveItem | None = None

    def __post_init__(self) -> None:
        _check_urls(self)


class Source:
    """The whole contract of a source; subclasses implement ``discover`` and ``fetch``.

    ``known`` and ``note_older`` let a newest-first listing stop early: the pipeline sets
    ``known`` to the keys already stored before it starts, and reports each item that turned
    out older than ``since`` (for listings whose dates are only on item pages).
    """

    name: str = ""

    def __init__(self) -> None:
        self.known: set[str] = set()

    def discover(self, since: dt.date | None = None, until: dt.date | None = None) -> Iterator[Stub]:
        raise NotImplementedError

    def fetch(self, stub: Stub) -> ArchiveItem:
        raise NotImplementedError

    def note_older(self, stub: Stub) -> None:
        """``stub``'s item is older than the range asked for (a hint; the default ignores it)."""


@dataclass(frozen=True)
class SourceOptions:
    """Everything a source may be configured with; each source reads the fields it knows."""

    base_url: str | None = None  # the one site to read, instead of the source's own (a mirror, a test server)
    sites: tuple[str, ...] = ()  # without base_url: the sites tried in turn (APOD: the main site, then mirrors)
    api: bool = False  # APOD: the JSON API instead of the HTML site
    api_url: str | None = None
    api_key: str = "DEMO_KEY"
    count: int = 0  # APOD API: this many random days
    categories: tuple[str, ...] = ()  # ESA/Hubble categories
    size: str = "screen"  # ESA/Hubble image size
    watch: bool = False  # a recurring poll: stop listings where stored items begin
    extra: dict = field(default_factory=dict, hash=False)


SourceFactory = Callable[["PoliteClient", SourceOptions], Source]
