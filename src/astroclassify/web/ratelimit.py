"""A token-bucket rate limiter, per API key or client address, in process memory.

Buckets refill continuously at ``per_minute / 60`` tokens a second. A bucket that has
refilled completely says nothing a new one would not, so idle buckets are dropped (at most
once a minute, and whenever the table outgrows ``max_buckets``): a stream of new client
addresses cannot grow the table without bound.

Several server processes (``serve --workers N``) share one table in a small SQLite file
(:class:`SharedRateLimiter`): a client is held to the advertised rate whichever worker its
connections land on. SQLite rather than Redis because the server is one machine and the
store is already SQLite; with ``synchronous=OFF`` (a crash only forgets who spent what) one
check costs about 0.1 ms (bench/serve_latency.py). The file is a courtesy between workers,
not a gate: a check waits at most ``LOCK_WAIT`` for it (off the event loop, ``blocking``) and
lets the request through when the file is held or broken, so a stuck lock never stalls
``/health`` or turns requests into 500s.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
import threading
import time
from pathlib import Path

__all__ = ["RateLimiter", "SharedRateLimiter"]

log = logging.getLogger(__name__)
LOCK_WAIT = 0.2  # seconds a check waits for the shared file before letting the request through


class RateLimiter:
    blocking = False  # whether ``check`` may wait on I/O (then the guard runs it off the event loop)

    def __init__(self, per_minute: int, burst: int | None = None, *, max_buckets: int = 100_000) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(burst or max(1, per_minute))
        self.max_buckets = max_buckets
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._next_prune = time.monotonic() + 60.0

    def check(self, key: str) -> float:
        """Take one token; returns 0 when allowed, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            if now >= self._next_prune or len(self._buckets) >= self.max_buckets:
                self._prune(now)
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate

    def __len__(self) -> int:
        return len(self._buckets)

    def _prune(self, now: float) -> None:
        """Drop buckets that have refilled; if still too many, the longest idle ones."""
        full = [k for k, (tokens, last) in self._buckets.items() if tokens + (now - last) * self.rate >= self.capacity]
        for k in full:
            del self._buckets[k]
        excess = len(self._buckets) - self.max_buckets // 2
        if excess > 0:
            for k, _ in sorted(self._buckets.items(), key=lambda kv: kv[1][1])[:excess]:
                del self._buckets[k]
        self._next_prune = now + 60.0

    @staticmethod
    def retry_after_header(wait: float) -> str:
        return str(max(1, math.ceil(wait)))


class SharedRateLimiter(RateLimiter):
    """The same buckets, in a SQLite file that every worker process on this machine opens."""

    blocking = True

    def __init__(self, path: Path, per_minute: int, burst: int | None = None, *, max_buckets: int = 100_000) -> None:
        super().__init__(per_minute, burst, max_buckets=max_buckets)
        self.path = Path(path)
        self._local = threading.local()
        self._new_keys = 0
        self._failed_open = 0
        self._warned_at = -math.inf
        from filelock import FileLock

        # Workers start together: switching a new file to WAL needs it to themselves, and
        # SQLite answers a second process "database is locked" at once instead of waiting.
        with FileLock(f"{self.path}.init-lock", timeout=30):
            db = self._connection()
            db.execute("PRAGMA journal_mode=WAL")  # kept in the file: later connections need not set it
            db.execute("CREATE TABLE IF NOT EXISTS buckets (key TEXT PRIMARY KEY, tokens REAL, last REAL)")

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=LOCK_WAIT, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA synchronous=OFF")
            self._local.db = db
        return db

    def check(self, key: str) -> float:
        if self.rate <= 0:
            return 0.0
        db = self._connection()
        # CLOCK_MONOTONIC is one clock for every process on the machine.
        now = time.monotonic()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            return self._open(exc)
        try:
            if now >= self._next_prune:
                db.execute("DELETE FROM buckets WHERE tokens + (? - last) * ? >= ?", (now, self.rate, self.capacity))
                self._next_prune = now + 60.0
            row = db.execute("SELECT tokens, last FROM buckets WHERE key = ?", (key,)).fetchone()
            tokens, last = row if row else (self.capacity, now)
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            allowed = tokens >= 1
            db.execute("INSERT OR REPLACE INTO buckets VALUES (?, ?, ?)", (key, tokens - 1 if allowed else tokens, now))
            if not row:
                self._new_keys += 1
                if self._new_keys >= max(1, self.max_buckets // 10):
                    self._cap_table(db)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback(db)
            return self._open(exc)
        except BaseException:
            self._rollback(db)
            raise
        return 0.0 if allowed else (1 - tokens) / self.rate

    @property
    def failed_open(self) -> int:
        """Checks let through because the shared file was held or broken."""
        return self._failed_open

    def _open(self, exc: sqlite3.Error) -> float:
        self._failed_open += 1
        now = time.monotonic()
        if now - self._warned_at > 60:  # once a minute: a held lock must not flood the log
            self._warned_at = now
            log.warning("rate limit file %s unavailable (%s); letting requests through", self.path, exc)
        return 0.0

    @staticmethod
    def _rollback(db: sqlite3.Connection) -> None:
        with contextlib.suppress(sqlite3.Error):  # no transaction left to undo
            db.execute("ROLLBACK")

    def _cap_table(self, db: sqlite3.Connection) -> None:
        """Past ``max_buckets``, forget the longest idle ones (new addresses cannot grow it forever)."""
        self._new_keys = 0
        (count,) = db.execute("SELECT count(*) FROM buckets").fetchone()
        if count >= self.max_buckets:
            db.execute(
                "DELETE FROM buckets WHERE key IN (SELECT key FROM buckets ORDER BY last LIMIT ?)",
                (count - self.max_buckets // 2,),
            )

    def __len__(self) -> int:
        return self._connection().execute("SELECT count(*) FROM buckets").fetchone()[0]
