"""This installation's contributions: corrections published as shareable labels, and the page peers read."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from astroclassify.config import DEFAULT_LIMITS, DecodeLimits
from astroclassify.errors import ImageDecodeError, RecordNotFoundError
from astroclassify.imaging.decode import decode_pil, sniff_format
from astroclassify.store import Store
from astroclassify.store.contributions import Contributions, installation_id
from astroclassify.store.images import existing_file
from astroclassify.store.tables import Contribution

__all__ = ["ImageIdentity", "contribution_image", "contributions_page", "identify_image", "publish_local_labels"]

PAGE_LIMIT = 500
UID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,95}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:/@#+-]{0,127}$")
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class ImageIdentity:
    """What identifies an image: its bytes' digest, its decoded pixels' digest (re-encodings differ), its format."""

    sha256: str
    pixels_sha256: str
    image_format: str


def identify_image(data: bytes, *, limits: DecodeLimits = DEFAULT_LIMITS) -> ImageIdentity:
    """Decode ``data`` safely (pixel and byte limits) and digest it; raises ``ImageDecodeError``."""
    image = decode_pil(data, limits=limits)
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageDecodeError("not an image format this installation stores")
    return ImageIdentity(hashlib.sha256(data).hexdigest(), hashlib.sha256(image.tobytes()).hexdigest(), fmt)


def publish_local_labels(store: Store, *, limits: DecodeLimits = DEFAULT_LIMITS) -> int:
    """Turn corrections made here into contributions (each once); returns how many were new.

    Only corrections their maker chose to share are published: those made without a key (the
    installation's web collection) and those of keys created with ``share=True``. Archive
    images carry their licence and credit with the label.
    """
    with store.session() as session:
        origin = installation_id(session)
        repo = Contributions(session)
        rows = []
        pending = repo.unpublished_feedback()
        shared = repo.shareable(pending)
        provenance = repo.provenance([fb.classification_id for fb in shared])
        for fb in shared:
            c = fb.classification
            if not LABEL.match(fb.label):
                continue  # free text a peer would refuse: stays a local correction
            path = store.images / c.stored_name
            try:
                identity = identify_image(path.read_bytes(), limits=limits)
            except (OSError, ImageDecodeError):
                continue  # the image is gone or unreadable: nothing to share
            who = c.owner or "web"
            rows.append(
                Contribution(
                    uid=f"{origin}-f{fb.id}",
                    origin=origin,
                    contributor=f"{origin}/{who}",
                    question="class",
                    answer=fb.label,
                    image_sha256=identity.sha256,
                    pixels_sha256=identity.pixels_sha256,
                    stored_name=c.stored_name,
                    image_format=identity.image_format,
                    licence=provenance.get(c.id, ("", ""))[0][:255],
                    credit=provenance.get(c.id, ("", ""))[1][:2000],
                    made_at=fb.created_at or dt.datetime.now(dt.UTC),
                    via="local",
                )
            )
        return repo.publish(rows, pending[-1].id) if pending else 0


def contributions_page(store: Store, since: int = 0, limit: int = 100) -> dict:
    """Contributions after cursor ``since`` (ours and those we received), oldest first, as peers read them."""
    publish_local_labels(store)
    with store.session() as session:
        origin = installation_id(session)
        rows = Contributions(session).page(max(0, since), max(1, min(limit, PAGE_LIMIT)))
        items = [
            {
                "seq": r.id,
                "uid": r.uid,
                "origin": r.origin,
                "contributor": r.contributor,
                "question": r.question,
                "answer": r.answer,
                "image_sha256": r.image_sha256,
                "pixels_sha256": r.pixels_sha256,
                "image_format": r.image_format,
                "licence": r.licence,
                "credit": r.credit,
                "made_at": r.made_at.isoformat() if r.made_at else None,
            }
            for r in rows
        ]
    return {"installation": origin, "items": items, "next": items[-1]["seq"] if items else since}


def contribution_image(store: Store, uid: str) -> tuple[Path, str]:
    """The image file of contribution ``uid`` and its format."""
    with store.session() as session:
        row = Contributions(session).by_uid(uid) if UID.match(uid) else None
        if row is None:
            raise RecordNotFoundError(f"no contribution {uid!r} here")
        return existing_file(store.images, row.stored_name, "contribution image"), row.image_format
