"""What a source yields: one archive item (an APOD day, an ESA/Hubble image) and its provenance."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, fields

from astroclassify.errors import IngestError
from astroclassify.urls import is_http_url

__all__ = ["MEDIA_TYPES", "ArchiveItem", "NotAPicturePage", "NothingFound", "Stub"]

MEDIA_TYPES = ("image", "video", "other")
URL_FIELDS = ("page_url", "image_url", "hires_url", "video_url", "thumbnail_url")


class NotAPicturePage(ValueError):
    """A page that is not a picture page (calendar, FAQ, index): recognised and skipped, not an error."""


class NothingFound(IngestError):
    """A listing was read, but it names no item in the range asked for (the message says what it has)."""


def _check_urls(record: object) -> None:
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
