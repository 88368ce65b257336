"""``DecodePool``: the few threads on which the web app decodes images.

A decode can hold a full-size image (a 49 Mpx PNG is 196 MB as RGBA, twice that while it is
reduced). Running decodes on a fixed set of threads (one per core) bounds how many run at
once, and it also bounds memory that a semaphore did not: glibc gives each thread its own
malloc arena, and memory freed in one arena is not reused by another, so six decodes on six
request threads kept six images' worth of memory (2.4 GB, measured by bench/attack_mix.py)
where two decode threads keep two. After each decode, glibc is asked to hand freed memory
back to the system (``malloc_trim``), so a burst of large images does not leave the server
at its peak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["DecodePool"]

T = TypeVar("T")


def _malloc_trim() -> Callable[[], object]:
    """glibc's ``malloc_trim(0)`` (about 2 µs when there is nothing to give back), or a no-op elsewhere."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows)
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


class DecodePool:
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="decode")
        self._trim = _malloc_trim()

    def run(self, fn: Callable[..., T], /, *args, **kwargs) -> T:
        """Run ``fn`` on a decode thread and wait for it (exceptions propagate to the caller)."""
        return self._pool.submit(self._then_trim, fn, args, kwargs).result()

    def _then_trim(self, fn: Callable[..., T], args, kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        finally:
            self._trim()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
