"""Running the app: uvicorn, one process or several, with what each request needs of the socket.

On 2 cores two processes with one ONNX Runtime thread each serve more than one process with
two (bench/serve_latency.py: ORT's threads wait on each other between small convolutions,
and a decode in one process no longer stalls inference in the other). Several processes
need what one does not:

- every worker builds the app from the environment (``uvicorn --factory``), so the settings
  the command line decided are handed over as ``ASTROCLASSIFY_*`` variables;
- TCP_NODELAY on each accepted socket: without it a response's last small segment waits
  for the client's delayed ACK (about 40 ms on every request, ``/health`` included);
- the database is made or migrated under a file lock (``store/db.py``), so workers starting
  together on a fresh home never race;
- the rate-limit buckets live in one SQLite file (``web/ratelimit.SharedRateLimiter``), so a
  client gets the advertised rate whichever worker answers it.

An idle connection is kept ``KEEP_ALIVE_S`` (uvicorn's default is 5 s): a client reuses a
pooled connection for up to its own expiry (httpx: 5 s, the same as uvicorn's), and a server
that closes it at that moment resets the request the client has just sent on it. The server
must hold connections longer than its clients do.

uvicorn times a connection only between requests: one that opens and sends nothing, or
trickles its headers, is held for ever (slowloris: 1,100 of them held every file descriptor).
Each connection must deliver its request's headers within ``Settings.header_timeout_s`` of
opening, or of its next request's first byte, and one address holds at most
``Settings.max_connections_per_address`` connections in a worker; the others are closed at once.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
from collections import Counter
from pathlib import Path
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from astroclassify.config import Settings

__all__ = ["KEEP_ALIVE_S", "serve", "worker_environment"]

KEEP_ALIVE_S = 75  # above common clients' pool expiry (httpx 5 s, requests/urllib3 none kept idle, browsers 60 s)


_OPEN: Counter[str] = Counter()  # connections open per client address, in this worker


class _Guarded:
    """Mixin for uvicorn's protocol classes: TCP_NODELAY, a deadline for headers, a cap per address.

    It reads only what uvicorn's protocols have in both implementations (``transport``,
    ``cycle``, ``loop``, ``app``); the limits come from the app's own settings, so every
    worker applies what the command line decided.
    """

    transport: Any
    cycle: Any
    loop: Any
    app: Any
    _deadline: Any = None
    _address: str = ""

    def connection_made(self, transport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)  # type: ignore[misc]
        settings = _settings_of(self.app)
        self._timeout = getattr(settings, "header_timeout_s", 20.0)
        peer = transport.get_extra_info("peername")
        self._address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        _OPEN[self._address] += 1
        if _OPEN[self._address] > getattr(settings, "max_connections_per_address", 64):
            transport.close()  # answered by nothing: an address at its cap is holding enough
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        idle = self.cycle is None or self.cycle.response_complete
        if idle and self._deadline is None:  # the first byte of the next request on a kept connection
            self._arm()
        before = self.cycle
        super().data_received(data)  # type: ignore[misc]
        if self.cycle is not before and self._deadline is not None:  # its headers are complete
            self._deadline.cancel()
            self._deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        _OPEN[self._address] -= 1
        if _OPEN[self._address] <= 0:
            del _OPEN[self._address]
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm(self) -> None:
        self._deadline = self.loop.call_later(self._timeout, self._headers_too_slow)

    def _headers_too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def _settings_of(app: Any) -> Settings | None:
    """The settings of our app inside whatever middleware uvicorn wrapped it in."""
    for _ in range(8):
        settings = getattr(getattr(app, "state", None), "settings", None)
        if isinstance(settings, Settings):
            return settings
        app = getattr(app, "app", None)
    return None


# Module-level classes: uvicorn's worker processes receive them pickled, by name.
class GuardedH11(_Guarded, H11Protocol):
    pass


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpTools(_Guarded, HttpToolsProtocol):
        pass

    HTTP_PROTOCOL: type = GuardedHttpTools
except ImportError:  # httptools is optional; h11 is always there
    HTTP_PROTOCOL = GuardedH11


def worker_environment(settings: Settings, workers: int) -> dict[str, str]:
    """The ``ASTROCLASSIFY_*`` variables that rebuild ``settings`` in each worker process."""
    env = {
        "ASTROCLASSIFY_HOME": str(settings.home),
        "ASTROCLASSIFY_SERVE_TTA": settings.serve_tta,
        "ASTROCLASSIFY_ALLOWED_HOSTS": ",".join(settings.allowed_hosts),
        "ASTROCLASSIFY_DEFAULT_MODEL": str(settings.model_or_default(None)),
        # One ORT thread per worker unless asked otherwise: the workers share the cores.
        "ASTROCLASSIFY_INFERENCE_THREADS": str(settings.inference_threads or (1 if workers > 1 else 0)),
        "ASTROCLASSIFY_RATE_LIMIT_PER_MINUTE": str(settings.rate_limit_per_minute),
        "ASTROCLASSIFY_RATE_LIMIT_STORE": str(settings.rate_limit_store or settings.home / "ratelimit.sqlite3"),
        "ASTROCLASSIFY_HEADER_TIMEOUT_S": str(settings.header_timeout_s),
        "ASTROCLASSIFY_MAX_CONNECTIONS_PER_ADDRESS": str(settings.max_connections_per_address),
    }
    if settings.require_api_key is not None:
        env["ASTROCLASSIFY_REQUIRE_API_KEY"] = str(settings.require_api_key).lower()
    if settings.default_detector is not None:
        env["ASTROCLASSIFY_DEFAULT_DETECTOR"] = str(Path(settings.default_detector).resolve())
    return env


def serve(
    settings: Settings | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    model: str | None = None,
    detector: Path | None = None,
) -> None:
    """Serve the web app and REST API until interrupted.

    Parameters
    ----------
    settings : Settings, optional
        As decided by the caller (the command line's flags over the environment); default:
        the installation's (``ASTROCLASSIFY_*``).
    workers : int
        Processes; with more than one, each gets one ORT thread, and they share the
        rate-limit buckets.
    model, detector
        The default model and an anomaly detector folder for it (``Settings.serving``: every
        worker reads them from the settings, like everything else).
    """
    import uvicorn

    if settings is None:
        from astroclassify.config import get_settings

        settings = get_settings()
    settings = settings.serving(model, detector)
    _raise_open_files_limit()
    # Proxy headers are read by the app itself, and only from ASTROCLASSIFY_TRUSTED_PROXIES:
    # uvicorn's default would believe any X-Forwarded-For sent from this machine.
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "info",
        "proxy_headers": False,
        "http": HTTP_PROTOCOL,
        "timeout_keep_alive": KEEP_ALIVE_S,
    }
    if workers <= 1:
        from astroclassify.web.app import create_app

        uvicorn.run(create_app(settings), **common)
        return
    env = worker_environment(settings, workers)
    store = Path(env["ASTROCLASSIFY_RATE_LIMIT_STORE"])
    store.parent.mkdir(parents=True, exist_ok=True)
    for stale in (store, Path(f"{store}-wal"), Path(f"{store}-shm"), Path(f"{store}.init-lock")):  # last run's
        stale.unlink(missing_ok=True)
    os.environ.update(env)
    uvicorn.run("astroclassify.web.app:create_app", factory=True, workers=workers, **common)


def _raise_open_files_limit() -> None:
    """Every descriptor the system allows this process: the soft limit (often 1,024) up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft != resource.RLIM_INFINITY and soft < target:  # never lowered
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
