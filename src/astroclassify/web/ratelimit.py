"""A token-bucket rate limiter, per API key or client address, in process memory.

Buckets refill continuously at ``per_minute / 60`` tokens a second. A bucket that has
refilled completely says nothing a new one would not, so idle buckets are dropped (at most
once a minute, and whenever the table outgrows ``max_buckets``): a stream of new client
addresses cannot grow the table without bound. One process serves one machine's requests
here; several server processes each keep their own buckets (each allows the full rate).
"""

from __future__ import annotations

import math
import threading
import time

__all__ = ["RateLimiter"]


class RateLimiter:
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
