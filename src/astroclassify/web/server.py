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
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from astroclassify.config import Settings

__all__ = ["KEEP_ALIVE_S", "serve", "worker_environment"]

KEEP_ALIVE_S = 75  # above common clients' pool expiry (httpx 5 s, requests/urllib3 none kept idle, browsers 60 s)


class _NoDelay:
    """Mixin for uvicorn's protocol classes: TCP_NODELAY on every accepted TCP connection."""

    def connection_made(self, transport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)  # type: ignore[misc]


# Module-level classes: uvicorn's worker processes receive them pickled, by name.
class NoDelayH11(_NoDelay, H11Protocol):
    pass


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class NoDelayHttpTools(_NoDelay, HttpToolsProtocol):
        pass

    HTTP_PROTOCOL: type = NoDelayHttpTools
except ImportError:  # httptools is optional; h11 is always there
    HTTP_PROTOCOL = NoDelayH11


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
