"""Discovery's background work: one daemon thread, one job per key at a time."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

__all__ = ["BackgroundJobs"]

log = logging.getLogger(__name__)


class BackgroundJobs:
    """Jobs run one at a time on a single daemon thread.

    A ranking, a map and a search graph built at once would take the cores from the requests
    and add up their memory. A daemon, so that a server stops at once (a job is only ever a
    cache refresh); a job that fails leaves the last result in place and the next request retries.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[tuple] = set()
        self._queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None

    def submit(self, key: tuple, job: Callable[[], None]) -> None:
        """Queue ``job`` unless one for ``key`` is already queued or running."""
        with self._lock:
            if key in self._running:
                return
            self._running.add(key)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="discovery-jobs", daemon=True)
                self._worker.start()

        def run() -> None:
            from threadpoolctl import threadpool_limits

            try:
                with threadpool_limits(1):  # BLAS and OpenMP (t-SNE) on one core: the other serves requests
                    job()
            except Exception:
                log.exception("background discovery job %s failed", key)
            finally:
                with self._lock:
                    self._running.discard(key)

        self._queue.put(run)

    def busy(self, key: tuple) -> bool:
        with self._lock:
            return key in self._running

    def _work(self) -> None:
        while True:
            self._queue.get()()
