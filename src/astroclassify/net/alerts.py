"""Alert notifiers and at-least-once delivery.

Every alert gets one delivery row per notifier. A delivery is marked done only after the
notifier succeeded, so a crash between sending and marking sends it again after restart
(at least once); receivers can drop repeats by ``alert_id`` (also sent as the webhook's
``Idempotency-Key`` header). Alerts themselves are unique per item and kind, so a restarted
watcher never raises a second alert for the same image.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import mailbox
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

import httpx

from astroclassify.errors import ConfigError
from astroclassify.net.http import deadline_transport, request_deadline
from astroclassify.store import Session
from astroclassify.store.alerts import Alerts
from astroclassify.store.archive import now

__all__ = [
    "FileNotifier",
    "LogNotifier",
    "MailboxNotifier",
    "Notifier",
    "WebhookNotifier",
    "deliver_pending",
    "make_notifiers",
]

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10
RETRY_BASE_S = 30.0
RETRY_CAP_S = 3600.0


class Notifier(Protocol):
    name: str  # stable: delivery rows refer to it across restarts

    def send(self, alert: dict) -> None:
        """Deliver or raise."""


class LogNotifier:
    name = "log"

    def send(self, alert: dict) -> None:
        log.warning("ALERT %s: %s", alert["alert_id"], alert["message"])


class WebhookNotifier:
    """POST the alert as JSON; any 2xx is delivery, anything else is retried later.

    A receiver is not trusted to answer sensibly: each delivery has one deadline (connect,
    send, headers and body together: a byte every 2 s no longer holds it), and only the first
    ``ANSWER_BYTES`` of an answer are read, since only its status matters.
    """

    ANSWER_BYTES = 4096

    def __init__(self, url: str, *, timeout: float = 10.0, transport: httpx.BaseTransport | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"webhook URL must start with http:// or https://, got {url!r}")
        self.url = url
        self.name = f"webhook:{url}"
        self.timeout = timeout
        self._client = httpx.Client(timeout=timeout, transport=transport or deadline_transport())

    def send(self, alert: dict) -> None:
        headers = {"Idempotency-Key": f"alert-{alert['alert_id']}"}
        try:
            with (
                request_deadline(self.timeout),
                self._client.stream("POST", self.url, json=alert, headers=headers) as r,
            ):
                answer = b""
                for chunk in r.iter_raw():  # raw: a compressed answer is not inflated either
                    answer += chunk[: self.ANSWER_BYTES - len(answer)]
                    if len(answer) >= self.ANSWER_BYTES:
                        break  # the rest is never read; the connection is closed
        except httpx.TimeoutException:
            raise RuntimeError(f"webhook gave no complete answer within {self.timeout:g} s") from None
        if not 200 <= r.status_code < 300:
            said = answer[:200].decode("utf-8", "replace").strip()
            raise RuntimeError(f"webhook answered HTTP {r.status_code}" + (f": {said}" if said else ""))


class FileNotifier:
    """Append one JSON line per alert to a file (easy to tail, grep or load)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.name = f"file:{self.path}"

    def send(self, alert: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(alert, default=str) + "\n")
            fh.flush()


class MailboxNotifier:
    """Append an e-mail per alert to an mbox file that any mail client opens (stdlib ``mailbox``)."""

    def __init__(self, path: Path, to: str = "astronomer@localhost") -> None:
        self.path = Path(path)
        self.to = to
        self.name = f"mbox:{self.path}"

    def send(self, alert: dict) -> None:
        msg = EmailMessage()
        msg["From"] = "astroclassify <astroclassify@localhost>"
        msg["To"] = self.to
        msg["Subject"] = f"[astroclassify] {alert['message'][:120]}"
        msg["Message-ID"] = f"<alert-{alert['alert_id']}@astroclassify>"
        msg.set_content(json.dumps(alert, indent=2, default=str))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        box = mailbox.mbox(self.path)
        box.lock()
        try:
            box.add(msg)
            box.flush()
        finally:
            box.unlock()
            box.close()


def make_notifiers(*, webhooks=(), files=(), mailboxes=(), log_alerts: bool = True) -> list[Notifier]:
    notifiers: list[Notifier] = [LogNotifier()] if log_alerts else []
    notifiers += [WebhookNotifier(u) for u in webhooks]
    notifiers += [FileNotifier(Path(p)) for p in files]
    notifiers += [MailboxNotifier(Path(p)) for p in mailboxes]
    return notifiers


def deliver_pending(session: Session, notifiers: list[Notifier], at: dt.datetime | None = None) -> dict[str, int]:
    """Try every due delivery once; failures wait 30 s, 60 s, ... (at most an hour), up to 10 tries."""
    at = at or now()
    by_name = {n.name: n for n in notifiers}
    counts = {"delivered": 0, "retry": 0, "failed": 0}
    for delivery in Alerts(session).due(at):
        notifier = by_name.get(delivery.notifier)
        if notifier is None:
            continue  # configured in an earlier run, not this one: left pending for it
        alert = delivery.alert
        body = {
            "alert_id": alert.id,
            "kind": alert.kind,
            "message": alert.message,
            "created_at": alert.created_at,
            **alert.payload,
        }
        delivery.attempts += 1
        try:
            notifier.send(json.loads(json.dumps(body, default=str)))
        except Exception as exc:  # noqa: BLE001 - any notifier failure is retried, never fatal
            delivery.last_error = f"{type(exc).__name__}: {exc}"[:500]
            if delivery.attempts >= MAX_ATTEMPTS:
                delivery.status = "failed"
                counts["failed"] += 1
            else:
                wait = min(RETRY_CAP_S, RETRY_BASE_S * 2 ** (delivery.attempts - 1))
                delivery.next_attempt_at = at + dt.timedelta(seconds=wait)
                counts["retry"] += 1
            log.warning(
                "alert %s via %s failed (%s); attempt %d",
                alert.id,
                delivery.notifier,
                delivery.last_error,
                delivery.attempts,
            )
        else:
            delivery.status = "delivered"
            delivery.delivered_at = now()
            delivery.last_error = ""
            counts["delivered"] += 1
        session.commit()
    return counts
