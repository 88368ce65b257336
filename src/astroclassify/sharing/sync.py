"""Pull another installation's contributions since our cursor, trusting nothing it sends.

Every item is checked before it is stored: its fields (names, labels, digests) against strict
patterns, its contributor against its origin, its uid against what we hold (a uid never
changes content), the image's bytes against the digest it claims and its decoded pixels
against the pixel digest, under our byte and pixel limits. An item that fails is refused
alone, with its reason; a peer that answers what is not a page, errors or hangs past the
deadline stops the sync with one clear error. Each item is committed with the cursor after
it, so a sync killed at any moment resumes where it stopped and nothing arrives twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from astroclassify.errors import AstroClassifyError, PeerError
from astroclassify.imaging.decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from astroclassify.ingestion.http import ACCEPT_ENCODING, deadline_transport, read_capped, request_deadline
from astroclassify.sharing.contributions import LABEL, NAME, UID, identify_image
from astroclassify.store import Store
from astroclassify.store.contributions import Contributions, Peers, installation_id
from astroclassify.store.images import save_image
from astroclassify.store.tables import Contribution

__all__ = ["SyncResult", "sync"]

DIGEST = re.compile(r"^[0-9a-f]{64}$")
FORMATS = frozenset({"JPEG", "PNG", "TIFF", "FITS", "WEBP", "BMP", "MPO"})
MAX_PAGE_BYTES = 4 * 1024 * 1024  # a page of 500 items is about 250 KiB
MAX_VOTES_PER_IMAGE = 50  # from one peer: a flood on one image is refused beyond this


@dataclass
class SyncResult:
    """One sync with one peer: what arrived, what was already here, what was refused and why."""

    peer: str
    received: int = 0
    repeats: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    images: int = 0  # image files downloaded (an image we hold is never fetched again)
    cursor: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "peer": self.peer,
            "received": self.received,
            "repeats": self.repeats,
            "refused": dict(self.refused),
            "images": self.images,
            "cursor": self.cursor,
            "seconds": round(self.seconds, 2),
        }

    def __repr__(self) -> str:
        refused = sum(self.refused.values())
        return f"SyncResult({self.peer}: {self.received} received, {self.repeats} already here, {refused} refused)"


def sync(
    store: Store,
    peer: str,
    key: str,
    *,
    page_size: int = 200,
    max_items: int = 100_000,
    timeout: float = 30.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    transport: httpx.BaseTransport | None = None,
) -> SyncResult:
    """Pull ``peer``'s contributions after our cursor for it; idempotent and resumable.

    Parameters
    ----------
    store : Store
        This installation's store.
    peer : str
        The other installation's base URL (``http://host:8000``).
    key : str
        An API key the peer issued to us.
    timeout : float
        Deadline of each request, connect to last byte: a peer that hangs stops the sync.
    max_bytes, max_pixels : int
        Our limits for each image (as for uploads).

    Raises
    ------
    PeerError
        The peer refused us, answered what is not a page, or hung; what was stored stays.
    """
    started = time.perf_counter()
    base = peer.rstrip("/")
    if not re.match(r"^https?://[^\s/]+", base):
        raise PeerError(f"{peer!r}: a peer is an http(s) URL such as http://host:8000")
    result = SyncResult(base)
    client = httpx.Client(
        transport=transport or deadline_transport(),
        timeout=timeout,
        headers={"X-API-Key": key, "User-Agent": "astroclassify-sync", "Accept-Encoding": ACCEPT_ENCODING},
        follow_redirects=False,
    )
    with client, store.session() as session:
        ours = installation_id(session)
        state = Peers(session).get(base)
        result.cursor = state.cursor
        try:
            while result.received + result.repeats + sum(result.refused.values()) < max_items:
                page = _page(client, base, result.cursor, page_size, timeout)
                if not page["items"]:
                    break
                for item in page["items"]:
                    reason = _take(session, client, base, ours, item, result, timeout, max_bytes, max_pixels, store)
                    if reason:
                        result.refused[reason] += 1
                        state.refused += 1
                    result.cursor = item["seq"]
                    state.cursor = result.cursor
                    session.commit()  # the item and the cursor after it, together
        except PeerError as exc:
            state.last_error = str(exc)
            session.commit()
            raise
        state.received += result.received
        state.last_sync_at = dt.datetime.now(dt.UTC)
        state.last_error = ""
        session.commit()
    result.seconds = time.perf_counter() - started
    return result


def _get(client: httpx.Client, url: str, timeout: float, max_body: int, params: dict | None = None) -> bytes:
    """The body of a 200 answer, at most ``max_body`` bytes, within the deadline; else PeerError."""
    try:
        with request_deadline(timeout), client.stream("GET", url, params=params) as response:
            if response.status_code != 200:
                detail = {401: "it refused our key", 403: "it refused our key", 404: "it has no such item"}.get(
                    response.status_code, "it failed"
                )
                raise PeerError(f"{url}: HTTP {response.status_code} ({detail})")
            body = read_capped(response, max_body)
            if body is None:
                raise PeerError(f"{url}: answer over {max_body} bytes; refused")
            return body
    except httpx.TimeoutException:
        raise PeerError(f"{url}: no answer within {timeout:.0f} s; the sync stopped, what arrived is kept") from None
    except httpx.HTTPError as exc:
        raise PeerError(f"{url}: {type(exc).__name__}: {exc}") from None


def _page(client: httpx.Client, base: str, since: int, limit: int, timeout: float) -> dict:
    body = _get(client, f"{base}/api/contributions", timeout, MAX_PAGE_BYTES, {"since": since, "limit": limit})
    try:
        page = json.loads(body)
        items = page["items"]
        if not isinstance(items, list) or len(items) > max(limit, 1):
            raise ValueError("items is not a list of at most the page size")
        seqs = [it["seq"] for it in items]
        if any(not isinstance(s, int) or isinstance(s, bool) for s in seqs):
            raise ValueError("seq is not an integer")
        if seqs != sorted(set(seqs)) or (seqs and seqs[0] <= since):
            raise ValueError("seq does not increase past our cursor")
    except (ValueError, KeyError, TypeError) as exc:
        raise PeerError(f"{base}: not a contributions page ({exc}); nothing taken from it") from None
    return page


def _take(session, client, base, ours, item, result, timeout, max_bytes, max_pixels, store) -> str | None:
    """Store one item; returns why it was refused, or None."""
    try:
        uid, origin, contributor = str(item["uid"]), str(item["origin"]), str(item["contributor"])
        question, answer = str(item.get("question") or "class"), str(item["answer"])
        image_sha, pixels_sha = str(item["image_sha256"]), str(item["pixels_sha256"])
        made_at = dt.datetime.fromisoformat(str(item["made_at"]))
        licence, credit = str(item.get("licence") or "")[:255], str(item.get("credit") or "")[:2000]
    except (KeyError, TypeError, ValueError):
        return "malformed item"
    if not (UID.match(uid) and UID.match(origin) and NAME.match(contributor)):
        return "malformed uid, origin or contributor"
    if not (LABEL.match(question) and LABEL.match(answer)):
        return "malformed label"
    if not (DIGEST.match(image_sha) and DIGEST.match(pixels_sha)):
        return "malformed digest"
    if not contributor.startswith(f"{origin}/"):
        return "contributor not of its origin (forged)"
    repo = Contributions(session)
    held = repo.by_uid(uid)
    if held is not None:
        same = (held.answer, held.contributor, held.pixels_sha256) == (answer, contributor, pixels_sha)
        if same:
            result.repeats += 1
            return None
        return "uid already here with other content (forged or changed)"
    if origin == ours:
        return "claims to be ours, but we never made it (forged)"
    if repo.votes_on(pixels_sha, base) >= MAX_VOTES_PER_IMAGE:
        return f"over {MAX_VOTES_PER_IMAGE} votes on one image from this peer (flood)"
    known = repo.by_pixels(pixels_sha)
    if known is not None and (store.images / known.stored_name).is_file():
        stored, fmt = known.stored_name, known.image_format
    else:
        try:
            data = _get(client, f"{base}/api/contributions/{uid}/image", timeout, max_bytes)
        except PeerError as exc:
            if "HTTP 404" in str(exc):
                return "image missing at the peer"
            if "bytes; refused" in str(exc):
                return "image over our byte limit"
            raise
        if hashlib.sha256(data).hexdigest() != image_sha:
            return "image bytes do not match their digest"
        try:
            identity = identify_image(data, max_pixels=max_pixels, max_bytes=max_bytes)
        except AstroClassifyError:  # ImageDecodeError, FileTooLargeError: counted by kind, not by message
            return "not an image we accept"
        if identity.pixels_sha256 != pixels_sha:
            return "decoded pixels do not match their digest"
        stored, fmt = save_image(data, identity.image_format, store.images), identity.image_format
        result.images += 1
    row = Contribution(
        uid=uid,
        origin=origin,
        contributor=contributor,
        question=question,
        answer=answer,
        image_sha256=image_sha,
        pixels_sha256=pixels_sha,
        stored_name=stored,
        image_format=fmt if fmt in FORMATS else "JPEG",
        licence=licence,
        credit=credit,
        made_at=made_at,
        via=base,
    )
    session.add(row)
    result.received += 1
    return None
