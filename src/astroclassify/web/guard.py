"""``RequestGuard``: what every request passes before the app reads a byte of its body.

In order: the Host header must be one this server answers to (DNS rebinding); the client's
address is the connecting one unless a configured proxy vouches for another; the rate limit
is charged (pages and refused requests too, per key or per address); an API request must
carry a valid key where keys are required; a state-changing request from another site's page
is refused; and the body is capped by ``Content-Length``, and again while it streams (by
Starlette's ``RequestBodyLimitResponder``, with a limit chosen per route).

It is plain ASGI rather than FastAPI dependencies because FastAPI parses a multipart body
*before* it runs a route's dependencies: a 1 GB upload without a key used to be written to
a temporary file in full before its 401.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
from dataclasses import dataclass
from urllib.parse import urlsplit

import anyio
from starlette.middleware.body_limit import RequestBodyLimitResponder
from starlette.types import ASGIApp, Receive, Scope, Send

from astroclassify.config import Settings
from astroclassify.files.sizes import format_bytes
from astroclassify.web.ratelimit import RateLimiter

__all__ = ["LOOPBACK_HOSTS", "Caller", "RequestGuard", "is_loopback"]

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Paths that need an API key where keys are required. Pages refuse such clients themselves.
API_PREFIXES = ("/api/", "/predict")
SHARING_PREFIX = "/api/contributions"  # for peer keys, and only for them
UNLIMITED_PREFIXES = ("/static/", "/favicon")  # cheap, and a page load fetches several
SMALL_BODY = 1024 * 1024  # JSON feedback, form posts
MULTIPART_SLACK = 256 * 1024  # boundaries, part headers and form fields around the file


@dataclass(frozen=True)
class Caller:
    """Who is asking: set on ``request.state.caller`` for the routes."""

    address: str
    owner: str | None  # "key:<id>" for a valid API key, else None
    key_required: bool  # whether this client must use a key (pages are refused to it)
    scope: str | None = None  # the key's scope: "client", or "peer" (shared labels only)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class RequestGuard:
    def __init__(self, app: ASGIApp, settings: Settings, limiter: RateLimiter) -> None:
        self.app = app
        self.settings = settings
        self.limiter = limiter
        self.trusted = frozenset(settings.trusted_proxies)
        self.hosts = frozenset(h.lower() for h in settings.allowed_hosts) or frozenset(LOOPBACK_HOSTS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path: str = scope["path"]
        has_body = headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in headers

        async def _refuse(status: int, kind: str, message: str, extra: dict[str, str] | None = None) -> None:
            # The body is never read: close the connection, or its bytes would be taken for the next request.
            close = {"Connection": "close"} if has_body else {}
            await _send_error(send, status, kind, message, {**(extra or {}), **close})

        host = _host_name(headers.get("host", ""))
        if "*" not in self.hosts and host not in self.hosts:
            return await _refuse(
                400, "HostNotAllowed", f"host {host!r} is not served here (ASTROCLASSIFY_ALLOWED_HOSTS)"
            )
        address = self._client_address(scope, headers)
        key_required = (
            self.settings.require_api_key if self.settings.require_api_key is not None else not is_loopback(address)
        )
        key = _api_key(headers)
        owner, key_scope = None, None
        if key:
            owner, key_scope = await anyio.to_thread.run_sync(_verify_key, scope["app"], key)
        limited = not path.startswith(UNLIMITED_PREFIXES)
        if limited:
            bucket = owner or f"ip:{address}"
            if self.limiter.blocking:  # the shared file may wait on another worker: never on the event loop
                wait = await anyio.to_thread.run_sync(self.limiter.check, bucket)
            else:
                wait = self.limiter.check(bucket)
            if wait:
                return await _refuse(
                    429,
                    "HTTPError",
                    f"rate limit of {self.settings.rate_limit_per_minute} requests per minute exceeded; retry in {wait:.1f} s",
                    {"Retry-After": str(max(1, math.ceil(wait)))},
                )
        if path.startswith(API_PREFIXES):
            if key and owner is None:
                return await _refuse(401, "HTTPError", "invalid or revoked API key", {"WWW-Authenticate": "ApiKey"})
            if owner is None and key_required:
                return await _refuse(
                    401,
                    "HTTPError",
                    "an API key is required: send it in the X-API-Key header",
                    {"WWW-Authenticate": "ApiKey"},
                )
            problem = _scope_problem(path, key_scope) if owner is not None else None
            if problem:
                return await _refuse(403, "HTTPError", problem)
        if scope["method"] in UNSAFE_METHODS:
            problem = _cross_site(headers, self._scheme(scope, headers), form_post=not path.startswith(API_PREFIXES))
            if problem:
                return await _refuse(403, "CrossSiteRequest", problem)
        limit = self._body_limit(path)
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return await _refuse(413, "FileTooLargeError", _too_large(int(declared), limit))
        scope.setdefault("state", {})["caller"] = Caller(address, owner, key_required, key_scope)
        # Starlette's own limiter counts the body as it streams (a chunked upload has no length).
        await RequestBodyLimitResponder(self.app, limit)(scope, receive, send)

    def _client_address(self, scope: Scope, headers: dict[str, str]) -> str:
        """The connecting address, or the first address a chain of trusted proxies vouches for."""
        peer = scope["client"][0] if scope.get("client") else ""
        if peer not in self.trusted:
            return peer
        hops = [h.strip() for h in headers.get("x-forwarded-for", "").split(",") if h.strip()]
        for hop in reversed(hops):  # the right-most entries were added by our own proxies
            if hop not in self.trusted:
                return hop
        return peer

    def _scheme(self, scope: Scope, headers: dict[str, str]) -> str:
        """The scheme the browser used: the connection's, or what a configured proxy says it terminated."""
        peer = scope["client"][0] if scope.get("client") else ""
        forwarded = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        if peer in self.trusted and forwarded in ("http", "https"):
            return forwarded
        return str(scope.get("scheme") or "http")

    def _body_limit(self, path: str) -> int:
        if path in ("/api/classify", "/predict", "/api/preview"):
            return self.settings.max_upload_bytes + MULTIPART_SLACK
        if path == "/api/classify/batch":
            return self.settings.batch_max_bytes + MULTIPART_SLACK
        return SMALL_BODY


def _host_name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _api_key(headers: dict[str, str]) -> str:
    auth = headers.get("authorization", "")
    return headers.get("x-api-key") or (auth[7:].strip() if auth.lower().startswith("bearer ") else "")


def _verify_key(app, key: str) -> tuple[str | None, str | None]:
    from astroclassify.store.api_keys import ApiKeys

    with app.state.sessions() as session:
        record = ApiKeys(session).verify(key)
        return (f"key:{record.id}", record.scope) if record is not None else (None, None)


def _scope_problem(path: str, scope: str | None) -> str | None:
    """Shared labels are for peer keys only, and a peer key reads nothing else."""
    sharing = path == SHARING_PREFIX or path.startswith(SHARING_PREFIX + "/")
    if sharing and scope != "peer":
        return "shared labels are read with a peer key (astroclassify keys create NAME --peer)"
    if scope == "peer" and not sharing:
        return "a peer key reads shared labels (/api/contributions) only"
    return None


def _origin(scheme: str, netloc: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) with the scheme's default port filled in, as browsers compare origins."""
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port or {"http": 80, "https": 443}.get(scheme.lower())
    except ValueError:
        return None
    if not parts.hostname or port is None:
        return None
    return scheme.lower(), parts.hostname.lower(), port


def _cross_site(headers: dict[str, str], scheme: str, *, form_post: bool) -> str | None:
    """Why a state-changing request looks cross-site, or None.

    Browsers send ``Origin`` with every POST (``Referer`` as a fallback); API clients such as
    curl send neither and are let through, since a browser can never omit both. A page's
    own forms must show where they come from. The whole origin is compared, scheme, host and
    port: a notebook or dev server on another port of the same host is another site.
    """
    origin = headers.get("origin") or headers.get("referer") or ""
    if not origin:
        return "a form post must come from this site's own pages (no Origin or Referer)" if form_post else None
    try:
        sent = urlsplit(origin) if origin != "null" else None
    except ValueError:
        sent = None
    theirs = _origin(sent.scheme, sent.netloc) if sent is not None and sent.scheme else None
    ours = _origin(scheme, headers.get("host", ""))
    if theirs is None or ours is None or theirs != ours:
        return f"cross-site request from {origin!r} refused (another scheme, host or port than this server's)"
    return None


def _too_large(size: int, limit: int) -> str:
    return f"request body of {format_bytes(size)} is over the {format_bytes(limit)} limit"


async def _send_error(send: Send, status: int, kind: str, message: str, headers: dict[str, str]) -> None:
    body = json.dumps({"error": {"type": kind, "message": message}}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
