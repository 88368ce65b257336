"""Pull another installation's contributions since our cursor, trusting nothing it sends.

Every item is checked before it is stored: its fields (names, labels, digests, sequence
numbers) against strict patterns and ranges, its contributor against its origin, its uid
against what we hold (a uid never changes content), the image's bytes against the digest it
claims and its decoded pixels against the pixel digest, under our byte and pixel limits. A
claimed digest is believed only for bytes we checked ourselves: an image we hold is reused only
when both its digests match the claim. An item that fails is refused alone, with its reason; a
peer that answers what is not a page, errors or hangs past the deadline stops the sync with one
clear error. A whole sync has a deadline and a byte budget; past either it stops, keeping what
arrived, and the next sync resumes. Each item is committed with the cursor after it, so a sync
killed at any moment resumes where it stopped and nothing arrives twice.

A peer is known by its resolved address (``localhost`` and ``127.0.0.1`` are one peer), which
is what the per-image vote cap and the aggregation's one-installation weight count by.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import re
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from astroclassify.config import DEFAULT_LIMITS, DecodeLimits
from astroclassify.errors import AstroClassifyError, PeerError, StoreFullError
from astroclassify.net.http import ACCEPT_ENCODING, deadline_transport, read_capped, request_deadline
from astroclassify.sharing.contributions import LABEL, NAME, UID, identify_image
from astroclassify.store import DatabaseError, Store
from astroclassify.store.contributions import Contributions, Peers, installation_id
from astroclassify.store.full import FULL_MESSAGE, is_storage_full
from astroclassify.store.images import save_image
from astroclassify.store.tables import Contribution

__all__ = ["MAX_PEER_BYTES", "MAX_PEER_ITEMS", "PEER_FULL", "SyncResult", "peer_identity", "sync"]

DIGEST = re.compile(r"^[0-9a-f]{64}$")
FORMATS = frozenset({"JPEG", "PNG", "TIFF", "FITS", "WEBP", "BMP", "MPO"})
MAX_PAGE_BYTES = 4 * 1024 * 1024  # a page of 500 items is about 250 KiB
MAX_VOTES_PER_IMAGE = 50  # from one peer: a flood on one image is refused beyond this
MAX_SEQ = 2**62  # a cursor is a 64-bit integer in every database we use
MAX_PEER_BYTES = 4 * 1024**3  # images one peer may have stored here, over all its syncs
MAX_PEER_ITEMS = 2_000_000  # contributions one peer may have here (Galaxy Zoo 2 has 16M votes in all)
PEER_FULL = "peer's storage share"


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
    bytes: int = 0  # bodies read from the peer, pages and images
    stopped: str = ""  # why the sync stopped before the peer ran out ("deadline", "byte budget", "item limit")

    def to_dict(self) -> dict[str, Any]:
        return {
            "peer": self.peer,
            "received": self.received,
            "repeats": self.repeats,
            "refused": dict(self.refused),
            "images": self.images,
            "cursor": self.cursor,
            "seconds": round(self.seconds, 2),
            "bytes": self.bytes,
            "stopped": self.stopped,
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
    max_seconds: float = 900.0,
    max_total_bytes: int = 2 * 1024**3,
    max_peer_bytes: int = MAX_PEER_BYTES,
    max_peer_items: int = MAX_PEER_ITEMS,
    limits: DecodeLimits = DEFAULT_LIMITS,
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
    max_seconds, max_total_bytes : float, int
        Budget of the whole sync: a peer that trickles items or bytes is left there (``stopped``
        says why), what arrived is kept, and the next sync goes on from the cursor.
    max_peer_bytes, max_peer_items : int
        What one peer may keep here over all its syncs: image bytes and contributions. A peer
        at its share stops here (``stopped`` says so) however many syncs follow, so no peer
        fills the disk 2 GiB at a time.
    limits : DecodeLimits
        Our limits for each image (as for uploads).

    Raises
    ------
    PeerError
        The peer refused us, answered what is not a page, or hung; what was stored stays.
    StoreFullError
        Our disk is full; what was stored before stays.
    """
    started = time.perf_counter()
    base = peer.rstrip("/")
    if not re.match(r"^https?://[^\s/]+$", base):
        raise PeerError(f"{peer!r}: a peer is an http(s) URL such as http://host:8000")
    via = peer_identity(base)
    result = SyncResult(base)
    budget = _Budget(started + max_seconds, max_total_bytes, result)
    client = httpx.Client(
        transport=transport or deadline_transport(),
        timeout=timeout,
        headers={"X-API-Key": key, "User-Agent": "astroclassify-sync", "Accept-Encoding": ACCEPT_ENCODING},
        follow_redirects=False,
    )
    try:
        with client, store.session() as session:
            ours = installation_id(session)
            state = Peers(session).get(base)
            result.cursor = state.cursor
            items, files = Contributions(session).held_from(via)
            budget.peer_items = max_peer_items - items
            budget.peer_bytes = max_peer_bytes - sum(_size(store.images / name) for name in files)
            try:
                while result.received + result.repeats + sum(result.refused.values()) < max_items:
                    if budget.spent():
                        break
                    page = _page(client, base, result.cursor, page_size, budget.timeout(timeout), budget)
                    if not page["items"]:
                        break
                    for item in page["items"]:
                        if budget.spent():
                            break
                        reason = _take(
                            session,
                            client,
                            base,
                            via,
                            ours,
                            item,
                            result,
                            timeout,
                            limits,
                            store,
                            budget,
                        )
                        if reason:
                            result.refused[reason] += 1
                            state.refused += 1
                        result.cursor = item["seq"]
                        state.cursor = result.cursor
                        session.commit()  # the item and the cursor after it, together
                else:
                    result.stopped = "item limit"
            except _BudgetSpent as stop:
                session.rollback()  # the item being read stays behind the cursor, for the next sync
                result.stopped = stop.reason
            except PeerError as exc:
                session.rollback()
                state.last_error = str(exc)[:2000]
                session.commit()
                raise
            state.received += result.received
            state.last_sync_at = dt.datetime.now(dt.UTC)
            state.last_error = f"stopped: {result.stopped}" if result.stopped else ""
            session.commit()
    except DatabaseError as exc:
        if is_storage_full(exc, store.home):
            raise StoreFullError(FULL_MESSAGE) from None
        raise
    result.seconds = time.perf_counter() - started
    return result


def peer_identity(base: str) -> str:
    """``scheme://address:port`` of a peer URL, its host resolved: aliases of one machine are one peer."""
    parts = urlsplit(base)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise PeerError(f"{base!r}: not a valid port") from None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise PeerError(f"{base}: cannot resolve {host!r}") from None
        address = ipaddress.ip_address(sorted(str(i[4][0]) for i in infos)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    shown = f"[{address}]" if address.version == 6 else str(address)
    return f"{scheme}://{shown}:{port}"


class _BudgetSpent(Exception):
    """The sync's time or byte budget ran out within an answer: the item is left for the next sync."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Budget:
    """What is left of one sync's time and bytes."""

    deadline: float  # perf_counter time
    max_bytes: int
    result: SyncResult
    peer_bytes: int = MAX_PEER_BYTES  # what is left of the peer's share of our storage, over all syncs
    peer_items: int = MAX_PEER_ITEMS

    def spent(self) -> bool:
        if time.perf_counter() >= self.deadline:
            self.result.stopped = "deadline"
        elif self.result.bytes >= self.max_bytes:
            self.result.stopped = "byte budget"
        elif self.peer_bytes <= 0 or self.peer_items <= 0:
            self.result.stopped = PEER_FULL
        return bool(self.result.stopped)

    def timeout(self, per_request: float) -> float:
        """A request's deadline: its own, or what is left of the sync's, whichever is sooner."""
        return max(0.5, min(per_request, self.deadline - time.perf_counter()))

    def body_limit(self, limit: int) -> int:
        return max(0, min(limit, self.max_bytes - self.result.bytes))


def _get(client: httpx.Client, url: str, timeout: float, max_body: int, params: dict | None, budget: _Budget) -> bytes:
    """The body of a 200 answer, at most ``max_body`` bytes, within the deadline; else PeerError."""
    allowed = budget.body_limit(max_body)
    try:
        with request_deadline(timeout), client.stream("GET", url, params=params) as response:
            if response.status_code != 200:
                detail = {401: "it refused our key", 403: "it refused our key", 404: "it has no such item"}.get(
                    response.status_code, "it failed"
                )
                raise PeerError(f"{url}: HTTP {response.status_code} ({detail})")
            body = read_capped(response, allowed)
            if body is None:
                budget.result.bytes += allowed
                if allowed < max_body:
                    raise _BudgetSpent("byte budget")
                raise PeerError(f"{url}: answer over {max_body} bytes; refused")
            budget.result.bytes += len(body)
            return body
    except httpx.TimeoutException:
        if budget.spent():  # the request was cut short by the whole sync's deadline, not by the peer's own
            raise _BudgetSpent(budget.result.stopped) from None
        raise PeerError(f"{url}: no answer within {timeout:.0f} s; the sync stopped, what arrived is kept") from None
    except httpx.HTTPError as exc:
        raise PeerError(f"{url}: {type(exc).__name__}: {exc}") from None


def _page(client: httpx.Client, base: str, since: int, limit: int, timeout: float, budget: _Budget) -> dict:
    body = _get(client, f"{base}/api/contributions", timeout, MAX_PAGE_BYTES, {"since": since, "limit": limit}, budget)
    try:
        page = json.loads(body)
        if not isinstance(page, dict):
            raise ValueError("not a JSON object")
        items = page["items"]
        if not isinstance(items, list) or len(items) > max(limit, 1):
            raise ValueError("items is not a list of at most the page size")
        if not all(isinstance(it, dict) for it in items):
            raise ValueError("an item is not a JSON object")
        seqs = [it["seq"] for it in items]
        if any(not isinstance(s, int) or isinstance(s, bool) or not 0 < s <= MAX_SEQ for s in seqs):
            raise ValueError("seq is not an integer in 1..2**62")
        if seqs != sorted(set(seqs)) or (seqs and seqs[0] <= since):
            raise ValueError("seq does not increase past our cursor")
    except RecursionError:
        raise PeerError(f"{base}: not a contributions page (JSON nested too deeply); nothing taken from it") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise PeerError(f"{base}: not a contributions page ({exc}); nothing taken from it") from None
    return page


def _take(session, client, base, via, ours, item, result, timeout, limits, store, budget) -> str | None:
    """Store one item; returns why it was refused, or None."""
    try:
        uid, origin, contributor = str(item["uid"]), str(item["origin"]), str(item["contributor"])
        question, answer = str(item.get("question") or "class"), str(item["answer"])
        image_sha, pixels_sha = str(item["image_sha256"]), str(item["pixels_sha256"])
        made_at = dt.datetime.fromisoformat(str(item["made_at"]))
        made_at = min(made_at if made_at.tzinfo else made_at.replace(tzinfo=dt.UTC), dt.datetime.now(dt.UTC))
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
    if repo.votes_on(pixels_sha, via) >= MAX_VOTES_PER_IMAGE:
        return f"over {MAX_VOTES_PER_IMAGE} votes on one image from this peer (flood)"
    known = repo.by_digests(image_sha, pixels_sha)  # both digests: a claim we checked once before
    if known is not None and (store.images / known.stored_name).is_file():
        stored, fmt = known.stored_name, known.image_format
    else:
        try:
            data = _get(
                client, f"{base}/api/contributions/{uid}/image", budget.timeout(timeout), limits.max_bytes, None, budget
            )
        except PeerError as exc:
            if "HTTP 404" in str(exc):
                return "image missing at the peer"
            if "bytes; refused" in str(exc):
                return "image over our byte limit"
            if "Content-Encoding" in str(exc):
                return "image sent in an encoding we refuse"
            raise
        if hashlib.sha256(data).hexdigest() != image_sha:
            return "image bytes do not match their digest"
        try:
            identity = identify_image(data, limits=limits)
        except AstroClassifyError:  # ImageDecodeError, FileTooLargeError: counted by kind, not by message
            return "not an image we accept"
        if identity.pixels_sha256 != pixels_sha:
            return "decoded pixels do not match their digest"
        if len(data) > budget.peer_bytes:
            raise _BudgetSpent(PEER_FULL)
        stored, fmt = save_image(data, identity.image_format, store.images), identity.image_format
        budget.peer_bytes -= len(data)
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
        via=via,
    )
    session.add(row)
    result.received += 1
    budget.peer_items -= 1
    return None


def _size(path) -> int:  # a pathlib.Path
    try:
        return path.stat().st_size
    except OSError:
        return 0
