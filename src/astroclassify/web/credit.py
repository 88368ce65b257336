"""The credit line shown next to a stored image: from its archive page if it was ingested, else from its name.

Archives ask that their credit stays next to any image shown (ESA/Hubble and ESA/Webb
publish under CC BY 4.0). Uploads keep their original file name, so an image saved
straight from an archive is recognised by its id, e.g. ``heic0506a.jpg`` or
``PIA12110.tif``. A renamed file gets no credit line rather than a guessed one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

from astroclassify.store.archive import IngestedItems

__all__ = ["ARCHIVE_NAMES", "Credit", "credit_for", "ingested_credit", "record_credit"]


@dataclass(frozen=True)
class Credit:
    archive: str
    id: str
    text: str
    url: str
    license: str


# (pattern on the file stem, archive, credit text, page URL template, licence)
_RULES = (
    (
        re.compile(r"(heic|potw|opo|ann|sci)\d{4}[a-z]{1,2}", re.I),
        "ESA/Hubble",
        "ESA/Hubble & NASA",
        "https://esahubble.org/images/{id}/",
        "CC BY 4.0",
    ),
    (
        re.compile(r"(weic|potm)\d{4}[a-z]{1,2}", re.I),
        "ESA/Webb",
        "ESA/Webb, NASA & CSA",
        "https://esawebb.org/images/{id}/",
        "CC BY 4.0",
    ),
    (
        re.compile(r"PIA\d{5}", re.I),
        "NASA Photojournal",
        "NASA/JPL-Caltech",
        "https://photojournal.jpl.nasa.gov/catalog/{id}",
        "NASA media usage guidelines",
    ),
    (
        re.compile(r"ap\d{6}", re.I),
        "NASA APOD",
        "credit as given on the APOD page",
        "https://apod.nasa.gov/apod/{id}.html",
        "see the APOD page",
    ),
)


def credit_for(filename: str) -> Credit | None:
    """The archive credit for ``filename``, or None when its name matches no known archive."""
    stem = PurePath(filename.replace("\\", "/")).stem
    for pattern, archive, text, url, licence in _RULES:
        if pattern.fullmatch(stem):
            ident = stem.upper() if archive == "NASA Photojournal" else stem.lower()
            return Credit(archive, ident, text, url.format(id=ident), licence)
    return None


ARCHIVE_NAMES = {"apod": "NASA APOD", "esahubble": "ESA/Hubble"}


def ingested_credit(source: str, key: str, credit: str, page_url: str, license: str) -> Credit:
    """The credit an archive's own page gave an ingested image (better than one guessed from a name)."""
    return Credit(ARCHIVE_NAMES.get(source, source), key.partition(":")[2], credit, page_url, license)


def record_credit(session, row) -> Credit | None:
    item = IngestedItems(session).by_sha256(row.sha256)
    if item is not None and item.credit:
        return ingested_credit(item.source, item.key, item.credit, item.page_url, item.license)
    return credit_for(row.filename)
