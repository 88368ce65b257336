"""``watch``: poll sources on a schedule, ingest and classify, raise and deliver alerts.

The schedule lives in the database (the last finished run of each source), not in memory,
so a restarted watcher neither polls early nor forgets a poll that is due; pending alert
deliveries likewise survive restarts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from astroclassify.inference.predictor import OnnxPredictor
from astroclassify.ingestion.run import IngestOptions, IngestResult, ItemOutcome, ingest
from astroclassify.ingestion.sources import Source
from astroclassify.net.alerts import Notifier, deliver_pending
from astroclassify.net.http import PoliteClient
from astroclassify.store import Store
from astroclassify.store.alerts import Alerts
from astroclassify.store.archive import IngestedItems, IngestRuns, as_utc, now

__all__ = ["WatchedSource", "Watcher", "watch"]

log = logging.getLogger(__name__)

MAX_SLEEP_S = 60.0  # wake at least this often to notice due retries and stop requests


@dataclass(frozen=True)
class WatchedSource:
    source: Source
    every: dt.timedelta = dt.timedelta(days=1)
    lookback: dt.timedelta = dt.timedelta(days=7)  # first poll: how far back to start


@dataclass
class Watcher:
    """What a watcher polls, where it stores, whom it alerts; ``poll_once`` or ``run``."""

    watched: list[WatchedSource]
    client: PoliteClient
    store: Store
    options: IngestOptions
    notifiers: Sequence[Notifier]
    predictor: OnnxPredictor | None = None
    on_item: Callable[[ItemOutcome], None] | None = None
    after_poll: Callable[[list[IngestResult]], None] | None = None  # e.g. one turn of the learning loop
    as_of: dt.date | None = None  # the day a first poll looks back from (a replay or backfill); None: today (UTC)

    def today(self) -> dt.date:
        return self.as_of or now().date()

    def poll_once(self, *, force: bool = False) -> list[IngestResult]:
        """Ingest every source that is due (all of them with ``force``), then deliver due alerts."""
        results = []
        for w in self.watched:
            with self.store.session() as session:
                last = IngestRuns(session).last_finished(w.source.name)
                items = IngestedItems(session)
                newest, failed = items.newest_date(w.source.name), items.oldest_failed_date(w.source.name)
            if not force and last is not None and last.finished_at and as_utc(last.finished_at) + w.every > now():
                continue
            # From the newest day stored, or the oldest that failed (retried), or the lookback.
            since = min(d for d in (newest, failed) if d) if (newest or failed) else self.today() - w.lookback
            opts = dataclasses.replace(self.options, since=since, notifiers=tuple(n.name for n in self.notifiers))
            result = ingest(
                w.source, self.store, client=self.client, options=opts, predictor=self.predictor, on_item=self.on_item
            )
            log.info("%s: %s, %d alerts", w.source.name, result.counts, result.alerts)
            results.append(result)
        if results and self.after_poll is not None:
            self.after_poll(results)
        with self.store.session() as session:
            deliver_pending(session, list(self.notifiers))
        return results

    def run(self, stop: threading.Event | None = None) -> None:
        """Poll until ``stop`` is set (the CLI sets it on SIGINT / SIGTERM)."""
        stop = stop or threading.Event()
        while not stop.is_set():
            self.poll_once()
            stop.wait(self._seconds_until_next())

    def _seconds_until_next(self) -> float:
        wake = now() + dt.timedelta(seconds=MAX_SLEEP_S)
        with self.store.session() as session:
            for w in self.watched:
                last = IngestRuns(session).last_finished(w.source.name)
                if last is not None and last.finished_at:
                    wake = min(wake, as_utc(last.finished_at) + w.every)
            retry = Alerts(session).next_retry()
            if retry is not None:
                wake = min(wake, retry)
        return max(1.0, (wake - now()).total_seconds())


def watch(
    sources: Sequence[Source],
    store: Store,
    *,
    every: dt.timedelta = dt.timedelta(days=1),
    client: PoliteClient,
    options: IngestOptions | None = None,
    notifiers: Sequence[Notifier] = (),
    predictor: OnnxPredictor | None = None,
    on_item: Callable[[ItemOutcome], None] | None = None,
    after_poll: Callable[[list[IngestResult]], None] | None = None,
    once: bool = False,
    force: bool = False,
    stop: threading.Event | None = None,
    as_of: dt.date | None = None,
) -> list[IngestResult]:
    """Poll ``sources`` for new items every ``every``, until ``stop`` is set or once.

    The time of each source's last poll is kept in the store, so a restarted watch does not
    poll early.

    Parameters
    ----------
    sources : sequence of Source
        Built with ``astroclassify.ingestion.catalog.make_source``.
    store : Store
        Where records, images and poll times go.
    every : datetime.timedelta
        The interval between two polls of one source.
    client : PoliteClient
        The HTTP client (rate limits, retries, cache).
    options : IngestOptions, optional
        As for ``ingest`` (limits, alert threshold).
    notifiers : sequence of Notifier
        Where alerts are delivered.
    predictor : OnnxPredictor, optional
        Classify each new image with it.
    on_item : callable, optional
        Called with each item's outcome.
    after_poll : callable, optional
        Called with the results of each round that polled a source (``watch --learn`` runs
        a turn of ``learn`` here), before alerts are delivered.
    once : bool
        Poll the sources that are due, then return.
    force : bool
        With ``once``: poll even the sources that are not due.
    stop : threading.Event, optional
        Set it to end a long-running watch (the CLI sets it on Ctrl-C or SIGTERM).
    as_of : datetime.date, optional
        The day a source's first poll looks back a week from (a replay or a backfill);
        default: today (UTC). Later polls go on from the newest day stored.

    Returns
    -------
    list of IngestResult
        One per poll made with ``once``; ``[]`` when a long-running watch is stopped.
    """
    watched = [WatchedSource(s, every) for s in sources]
    watcher = Watcher(
        watched, client, store, options or IngestOptions(), notifiers, predictor, on_item, after_poll, as_of
    )
    if once:
        return watcher.poll_once(force=force)
    watcher.run(stop)
    return []
