"""A polite HTTP client for scraping public archives.

What a maintainer of a public archive would ask of a scraper, in one place:

- an identifying User-Agent with a contact URL;
- robots.txt honoured (RFC 9309: a 4xx robots.txt allows everything, an unreachable one
  (5xx, network error) disallows the host until it can be read), including ``Crawl-delay``;
- at most one request per ``min_interval`` seconds per host;
- retries with exponential backoff and full jitter on 429, 5xx, timeouts and dropped
  connections, honouring ``Retry-After`` (seconds or an HTTP date);
- conditional requests (ETag / Last-Modified) against an on-disk cache of pages, so
  re-running a crawl costs the site a 304 per page;
- one deadline per request, connect, headers and body included (httpx's timeouts are per
  socket operation, so a server sending a byte a second never trips them): every socket
  operation of a request gets at most the time left until its deadline;
- a maximum body size (checked on Content-Length, then while streaming), robots.txt
  included (read up to 512 KiB, as RFC 9309 allows), and for images a content-type plus
  magic-byte check.

Retries, caching and rate limiting are written here rather than taken from tenacity or
hishel because they share state: the wait after a 429 comes from the response and also
holds back the host's rate limiter, and only pages (never multi-MB images) are cached, and
always revalidated. Together that is about as much code as configuring the libraries.
"""

from __future__ import annotations

import contextlib
import contextvars
import email.utils
import hashlib
import json
import logging
import random
import threading
import time
import urllib.robotparser
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpcore
import httpx

from astroclassify._version import __version__
from astroclassify.errors import IngestError
from astroclassify.files.sizes import format_bytes

__all__ = [
    "ACCEPT_ENCODING",
    "BodyTooLarge",
    "FetchError",
    "iter_capped",
    "PoliteClient",
    "Response",
    "deadline_transport",
    "read_capped",
    "request_deadline",
]

log = logging.getLogger(__name__)

USER_AGENT = (
    f"astroclassify/{__version__} (+https://github.com/astroclassify/astroclassify; image classification research)"
)
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309: crawlers must parse at least 500 KiB, may ignore the rest
# First bytes of the image formats we accept from archives.
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF8", b"II*\x00", b"MM\x00*", b"SIMPLE  =")


class FetchError(IngestError):
    """A URL could not be fetched (after retries); ``status`` is the last HTTP status, if any."""

    def __init__(self, message: str, *, url: str, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


@dataclass(frozen=True)
class Response:
    url: str  # after redirects
    status: int
    content: bytes
    content_type: str
    from_cache: bool = False

    @property
    def text(self) -> str:
        return self.content.decode(_charset(self.content_type), errors="replace")

    def json(self) -> object:
        return json.loads(self.content)


@dataclass
class _Host:
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_time: float = 0.0  # monotonic time before which no request may start
    robots: urllib.robotparser.RobotFileParser | None = None
    robots_error: str | None = None


# The deadline of the request running on this thread (None: no deadline).
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("astroclassify_deadline", default=None)


def _time_left(timeout: float | None) -> float | None:
    """The socket timeout for one operation: never past the current request's deadline."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("request deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _time_left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _time_left(timeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, _time_left(timeout)))

    def get_extra_info(self, info: str):
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own socket backend, with every operation held to the request's deadline."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        stream = self._backend.connect_tcp(host, port, _time_left(timeout), local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        return _DeadlineStream(self._backend.connect_unix_socket(path, _time_left(timeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


# Content encodings we read: decoded here, never by httpx, whose decoders inflate a whole
# network chunk at once and stack encodings without limit (3 KB of `gzip, gzip` is 2 GB).
ACCEPT_ENCODING = "gzip, deflate"
_ZLIB_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": 32 + zlib.MAX_WBITS}
_INFLATE_STEP = 256 * 1024  # decoded bytes produced per step, so a bomb is stopped within one step of the cap


class BodyTooLarge(ValueError):
    """A body decoded past its byte limit (checked as the bytes are produced)."""


def _encodings(response: httpx.Response) -> list[str]:
    header = ",".join(response.headers.get_list("content-encoding"))
    return [e.strip().lower() for e in header.split(",") if e.strip() and e.strip().lower() != "identity"]


def iter_capped(response: httpx.Response, limit: int) -> Iterator[bytes]:
    """A streamed answer's decoded body in chunks, raising ``BodyTooLarge`` once it passes ``limit`` bytes.

    Bytes are counted as they are produced, after decoding: identity and one gzip or deflate
    layer are read (what ``ACCEPT_ENCODING`` asks for); stacked or other encodings raise
    ``httpx.DecodingError`` before anything is inflated. zlib rather than httpx's decoders
    because only zlib's ``max_length`` bounds what one compressed chunk may become.
    """
    if response.is_stream_consumed and hasattr(response, "_content"):
        # Read already, by an in-process transport (httpx.MockTransport, ASGI): nothing left to bound.
        if len(response.content) > limit:
            raise BodyTooLarge(f"body is over the {format_bytes(limit)} limit")
        yield response.content
        return
    encodings = _encodings(response)
    if not encodings:
        size = 0
        for chunk in response.iter_raw():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"body is over the {format_bytes(limit)} limit")
            yield chunk
        return
    if len(encodings) > 1 or encodings[0] not in _ZLIB_WBITS:
        raise httpx.DecodingError(
            f"Content-Encoding {', '.join(encodings)!r} refused (we read identity, gzip or deflate)"
        )
    wbits = _ZLIB_WBITS[encodings[0]]
    inflater = zlib.decompressobj(wbits)
    size = 0
    for raw in response.iter_raw():
        data = raw
        while data:
            try:
                chunk = inflater.decompress(data, _INFLATE_STEP)
            except zlib.error as exc:
                if wbits != -zlib.MAX_WBITS and encodings[0] == "deflate" and size == 0:
                    wbits, inflater = (
                        -zlib.MAX_WBITS,
                        zlib.decompressobj(-zlib.MAX_WBITS),
                    )  # raw deflate, as some servers send
                    continue
                raise httpx.DecodingError(f"{encodings[0]} body is corrupt ({exc})") from None
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"body is over the {format_bytes(limit)} limit (decoded)")
            if chunk:
                yield chunk
            if inflater.eof:  # concatenated gzip members are one body; anything after is the next member
                data = inflater.unused_data
                inflater = zlib.decompressobj(wbits)
            else:
                data = inflater.unconsumed_tail


def read_capped(response: httpx.Response, limit: int) -> bytes | None:
    """A streamed answer's decoded body, or None as soon as it passes ``limit`` bytes (the rest is never read).

    Every reader of an untrusted answer (archives, ``batch`` URLs, ``sync``) goes through
    ``iter_capped``, so a decompression bomb costs at most ``limit`` plus one step.
    """
    body = bytearray()
    try:
        for chunk in iter_capped(response, limit):
            body += chunk
    except BodyTooLarge:
        return None
    return bytes(body)


def deadline_transport() -> httpx.HTTPTransport:
    """httpx's transport on the deadline backend (httpx takes no backend argument: set on its pool).

    Requests through it made inside ``request_deadline`` end by that deadline, whatever the
    server does; outside one, only httpx's per-operation timeouts apply.
    """
    transport = httpx.HTTPTransport()
    transport._pool._network_backend = _DeadlineBackend()  # httpx 0.28 / httpcore 1.0 (pinned, tested)
    return transport


@contextlib.contextmanager
def request_deadline(seconds: float) -> Iterator[None]:
    """Every socket operation on this thread (through ``deadline_transport``) ends within ``seconds`` from now."""
    token = _deadline.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


class PoliteClient:
    """Fetch pages and images politely.

    Parameters
    ----------
    cache_dir : Path, optional
        Where page bodies and their validators are kept; None disables the cache.
    min_interval : float, default=1.0
        Seconds between two requests to one host (robots.txt ``Crawl-delay`` raises it).
    max_retries : int, default=4
        Retries after the first attempt, for 429, 5xx, timeouts and dropped connections.
    backoff : float, default=1.0
        Base of the exponential backoff: attempt n waits up to ``backoff * 2**n`` s.
    max_wait : float, default=300
        Longest wait between attempts; a longer ``Retry-After`` fails the request instead.
    timeout : float, default=60
        Deadline in seconds for one attempt: connecting, headers and body together.
    max_bytes : int, default=64 MiB
        Larger bodies are refused (on Content-Length before downloading, then while streaming).
    """

    def __init__(
        self,
        *,
        cache_dir: str | Path | None = None,
        user_agent: str = USER_AGENT,
        min_interval: float = 1.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_wait: float = 300.0,
        timeout: float = 60.0,
        max_bytes: int = 64 * 1024 * 1024,
        respect_robots: bool = True,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.min_interval = min_interval
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_wait = max_wait
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.respect_robots = respect_robots
        self.user_agent = user_agent
        self._sleep = sleep
        self._clock = clock  # with ``sleep``: the pace between requests (tests pass a fake pair)
        self._hosts: dict[str, _Host] = {}
        self._hosts_lock = threading.Lock()
        self._http = httpx.Client(
            headers={"User-Agent": user_agent, "Accept-Encoding": ACCEPT_ENCODING},
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            follow_redirects=True,
            max_redirects=5,
            transport=transport or deadline_transport(),
        )
        self.requests_made = 0

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PoliteClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- public -------------------------------------------------------------------------

    def get_page(self, url: str, *, params: dict | None = None, cache: bool = True) -> Response:
        """GET an HTML or JSON page; cached and revalidated with ETag / Last-Modified."""
        full = str(httpx.URL(url, params=params)) if params else url
        cached = self._cache_read(full) if cache and self.cache_dir else None
        headers = {}
        if cached:
            if cached.get("etag"):
                headers["If-None-Match"] = cached["etag"]
            if cached.get("last_modified"):
                headers["If-Modified-Since"] = cached["last_modified"]
        response, meta = self._fetch(full, headers=headers, ok_statuses=(200, 304))
        if response.status == 304 and cached:
            body = self._cache_path(full).with_suffix(".body").read_bytes()
            return Response(full, 200, body, cached.get("content_type", ""), from_cache=True)
        if cache and self.cache_dir and response.status == 200:
            self._cache_write(full, response, meta)
        return response

    def get_json(self, url: str, *, params: dict | None = None, ok_statuses=(200,)) -> Response:
        """GET a JSON API response without caching; other statuses in ``ok_statuses`` are returned, not raised."""
        full = str(httpx.URL(url, params=params)) if params else url
        response, _ = self._fetch(full, headers={"Accept": "application/json"}, ok_statuses=ok_statuses)
        return response

    def get_image(self, url: str) -> Response:
        """GET an image, refusing anything that is not one by its content type and first bytes."""
        response, _ = self._fetch(url, headers={"Accept": "image/*"}, ok_statuses=(200,))
        ctype = response.content_type.split(";")[0].strip().lower()
        if ctype and not (ctype.startswith("image/") or ctype in {"application/fits", "application/octet-stream"}):
            raise FetchError(f"{url}: served as {ctype!r}, not an image", url=url, status=response.status)
        if not response.content.startswith(IMAGE_MAGIC) and response.content[8:12] != b"WEBP":
            start = response.content[:16].lstrip().lower()
            what = "HTML" if start.startswith((b"<!doctype", b"<html", b"<")) else "not an image"
            raise FetchError(f"{url}: body is {what} although served as {ctype or 'no type'}", url=url, status=200)
        return response

    def allowed(self, url: str) -> bool:
        """True if robots.txt lets this client fetch ``url``."""
        if not self.respect_robots:
            return True
        host = self._host(url)
        if host.robots is None and host.robots_error is None:
            self._load_robots(url, host)
        if host.robots_error is not None or host.robots is None:
            return False
        return host.robots.can_fetch(self.user_agent, url)

    # -- internals ----------------------------------------------------------------------

    def _fetch(self, url: str, *, headers: dict, ok_statuses) -> tuple[Response, dict]:
        if not self.allowed(url):
            host = self._host(url)
            why = host.robots_error or "disallowed by robots.txt"
            raise FetchError(f"{url}: {why}", url=url)
        last_error = ""
        status = None
        for attempt in range(self.max_retries + 1):
            self._wait_turn(url)
            retry_after = None
            try:
                response, meta = self._attempt(url, headers)
            except httpx.TooManyRedirects:
                raise FetchError(f"{url}: too many redirects (a redirect loop?)", url=url) from None
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                status = None
            else:
                status = response.status
                if status in ok_statuses:
                    return response, meta
                if status not in RETRY_STATUS:
                    raise FetchError(f"{url}: HTTP {status}", url=url, status=status)
                last_error = f"HTTP {status}"
                retry_after = _parse_retry_after(meta.get("retry_after"))
            if attempt == self.max_retries:
                break
            wait = retry_after if retry_after is not None else random.uniform(0, self.backoff * 2**attempt)
            if wait > self.max_wait:
                raise FetchError(
                    f"{url}: {last_error}, asked to retry after {wait:.0f} s (over {self.max_wait:.0f} s)",
                    url=url,
                    status=status,
                )
            log.info(
                "retrying %s in %.1f s after %s (attempt %d of %d)",
                url,
                wait,
                last_error,
                attempt + 2,
                self.max_retries + 1,
            )
            self._hold_host(url, wait)
        raise FetchError(f"{url}: {last_error} after {self.max_retries + 1} attempts", url=url, status=status)

    def _attempt(self, url: str, headers: dict, *, max_bytes: int | None = None, truncate: bool = False):
        """One GET within the deadline and size limit; ``truncate`` keeps the first ``max_bytes`` instead of failing."""
        limit = self.max_bytes if max_bytes is None else max_bytes
        self.requests_made += 1
        try:
            with request_deadline(self.timeout), self._http.stream("GET", url, headers=headers) as r:
                declared = r.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > limit and r.status_code == 200 and not truncate:
                    raise FetchError(
                        f"{url}: Content-Length {format_bytes(int(declared))} is over the {format_bytes(limit)} limit",
                        url=url,
                        status=r.status_code,
                    )
                chunks, size = [], 0
                try:
                    for chunk in iter_capped(r, limit if not truncate else limit + _INFLATE_STEP):
                        size += len(chunk)
                        if size > limit:
                            if truncate:
                                chunks.append(chunk[: len(chunk) - (size - limit)])
                                break
                            raise BodyTooLarge()
                        chunks.append(chunk)
                except BodyTooLarge:
                    raise FetchError(
                        f"{url}: body is over the {format_bytes(limit)} limit", url=url, status=r.status_code
                    ) from None
                meta = {
                    "etag": r.headers.get("etag"),
                    "last_modified": r.headers.get("last-modified"),
                    "retry_after": r.headers.get("retry-after"),
                }
                return Response(str(r.url), r.status_code, b"".join(chunks), r.headers.get("content-type", "")), meta
        except httpx.TimeoutException as exc:
            raise type(exc)(f"no complete answer within {self.timeout:g} s ({exc})") from None
        except httpx.DecodingError as exc:
            raise FetchError(f"{url}: {exc}", url=url) from None

    def _host(self, url: str) -> _Host:
        key = urlsplit(url).netloc.lower()
        with self._hosts_lock:
            return self._hosts.setdefault(key, _Host())

    def _wait_turn(self, url: str) -> None:
        host = self._host(url)
        with host.lock:
            now = self._clock()
            if host.next_time > now:
                self._sleep(host.next_time - now)
            interval = self.min_interval
            if host.robots is not None:
                delay = host.robots.crawl_delay(self.user_agent)
                interval = max(interval, float(delay or 0))
            host.next_time = self._clock() + interval

    def _hold_host(self, url: str, seconds: float) -> None:
        host = self._host(url)
        with host.lock:
            host.next_time = max(host.next_time, self._clock() + seconds)

    def _load_robots(self, url: str, host: _Host) -> None:
        parts = urlsplit(url)
        robots_url = f"{parts.scheme}://{parts.netloc}/robots.txt"
        parser = urllib.robotparser.RobotFileParser(robots_url)
        try:
            self._wait_turn(robots_url)
            # The same deadline and a size cap as every request: a slow or endless robots.txt
            # must not hang or fill memory. Past 512 KiB the rest is ignored, as RFC 9309 allows.
            r, _ = self._attempt(robots_url, {}, max_bytes=ROBOTS_MAX_BYTES, truncate=True)
        except (httpx.HTTPError, FetchError) as exc:
            host.robots_error = f"robots.txt unreachable ({type(exc).__name__}: {exc}); not crawling this host"
            return
        if r.status >= 500:
            host.robots_error = f"robots.txt answered HTTP {r.status}; not crawling this host"
            return
        parser.parse(r.text.splitlines() if r.status == 200 else [])
        host.robots = parser

    def _cache_path(self, url: str) -> Path:
        assert self.cache_dir is not None  # only called where the cache is on
        return self.cache_dir / hashlib.sha256(url.encode()).hexdigest()[:32]

    def _cache_read(self, url: str) -> dict | None:
        meta = self._cache_path(url).with_suffix(".json")
        body = self._cache_path(url).with_suffix(".body")
        if not (meta.is_file() and body.is_file()):
            return None
        try:
            return json.loads(meta.read_text())
        except ValueError:
            return None

    def _cache_write(self, url: str, response: Response, meta: dict) -> None:
        if not (meta.get("etag") or meta.get("last_modified")):
            return  # nothing to revalidate with; the page is fetched again next time
        base = self._cache_path(url)
        base.parent.mkdir(parents=True, exist_ok=True)
        base.with_suffix(".body").write_bytes(response.content)
        record = {
            "url": url,
            "etag": meta.get("etag"),
            "last_modified": meta.get("last_modified"),
            "content_type": response.content_type,
        }
        base.with_suffix(".json").write_text(json.dumps(record))


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            return value.strip("\"'")
    return "utf-8"
