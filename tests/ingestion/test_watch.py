"""``astroclassify watch`` and alert delivery: a new day is ingested, classified and alerted exactly once."""

from __future__ import annotations

import datetime as dt
import json
import mailbox
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from astroclassify.net.alerts import FileNotifier, MailboxNotifier, WebhookNotifier, deliver_pending
from astroclassify.store.alerts import Alerts
from astroclassify.store.archive import IngestedItems, now
from astroclassify.store.db import make_engine, make_sessionmaker
from astroclassify.store.tables import IngestedItem

# The watch reads the archive as of this day: no test depends on the day it runs.
TODAY = dt.date(2026, 11, 30)


class Receiver:
    """A local webhook endpoint that records each POST and can be told to fail."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.headers: list[dict] = []
        self.fail_next = 0
        self.mode = "normal"  # or "huge" (an endless 200 answer) or "trickle" (a header byte every 0.4 s)
        self.sent_bytes = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.mode == "huge":
                    self._endless()
                    return
                if receiver.mode == "trickle":
                    for byte in b"HTTP/1.1 204 No Content\r\n\r\n":
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(0.4)
                    return
                if receiver.fail_next:
                    receiver.fail_next -= 1
                    self.send_response(503)
                else:
                    receiver.received.append(json.loads(body))
                    receiver.headers.append(dict(self.headers))
                    self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _endless(self) -> None:
                """1 GiB announced, sent until the client hangs up."""
                self.send_response(500)
                self.send_header("Content-Length", str(1 << 30))
                self.end_headers()
                block = b"x" * 65536
                try:
                    while receiver.sent_bytes < 1 << 30:
                        self.wfile.write(block)
                        receiver.sent_bytes += len(block)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def mails(path) -> int:
    box = mailbox.mbox(path)
    try:
        return len(box)
    finally:
        box.close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.mark.slow
def test_new_day_is_ingested_classified_and_alerted_once(site, cli, receiver, tmp_path):
    today = TODAY
    site.add_day(today, "A brand new picture")
    mbox = tmp_path / "alerts.mbox"
    common = (
        "--base-url", f"{site.url}/apod/", "--webhook", receiver.url, "--mailbox", str(mbox), "--json",
        "--no-alert-unusual", "--as-of", TODAY.isoformat(),  # low-confidence alerts only here; anomaly alerts have their own test
    )  # fmt: skip
    # Every confidence is under 1.01, so every new image raises an alert.
    first = cli("watch", "--once", "--alert-below", "1.01", *common)
    assert first.returncode == 0, first.stderr
    rows = [json.loads(line) for line in first.stdout.splitlines()]
    assert [(r["date"], r["status"]) for r in rows] == [(today.isoformat(), "stored")]  # only the last week
    assert rows[0]["label"] and rows[0]["confidence"] is not None
    assert len(receiver.received) == 1
    alert = receiver.received[0]
    assert alert["kind"] == "low_confidence" and alert["date"] == today.isoformat()
    assert alert["title"] == "A brand new picture" and alert["label"] == rows[0]["label"]
    assert alert["model"] == rows[0]["model"] == "dso@1"  # the version that answered (bundled: 1)
    assert receiver.headers[0]["Idempotency-Key"] == f"alert-{alert['alert_id']}"
    assert mails(mbox) == 1

    # A restarted watcher: not due yet, then forced; either way no second alert.
    again = cli("watch", "--once", "--alert-below", "1.01", *common)
    forced = cli("watch", "--once", "--force", "--alert-below", "1.01", *common)
    assert again.returncode == 0 and again.stdout == ""
    assert forced.returncode == 0 and [json.loads(x)["status"] for x in forced.stdout.splitlines()] == ["skipped"]
    assert len(receiver.received) == 1 and mails(mbox) == 1

    # The long-running watcher polls on its schedule; a day published meanwhile arrives once.
    proc = subprocess.Popen(
        [sys.executable, "-m", "astroclassify.cli", "watch", "--every", "1s", "--alert-below", "1.01", *common],
        env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        seen, deadline = len(site.log), time.monotonic() + 60
        while len(site.log) == seen and time.monotonic() < deadline:
            time.sleep(0.1)  # started, and polling (a day added before its first poll arrives the same once)
        site.add_day(today + dt.timedelta(days=1), "Tomorrow's picture, early")
        while len(receiver.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.5)  # more polls (one a second): nothing new to send
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert [a["title"] for a in receiver.received] == ["A brand new picture", "Tomorrow's picture, early"]
    restarted = cli("watch", "--once", "--force", "--alert-below", "1.01", *common)
    assert restarted.returncode == 0
    assert len(receiver.received) == 2 and mails(mbox) == 2


def test_unusual_images_raise_one_anomaly_alert(site, cli, receiver):
    """The test site's pictures are drawn, not photographed: the dso detector flags them.

    The picture is drawn from its path, so the path is fixed (drawn from the date, 19 of 30
    dates scored usual), and the watch reads the archive as of a fixed day.
    """
    site.add_day(TODAY, "Something odd", image="image/odd/Odd_09.jpg")  # 0.97 at both sizes the page links
    common = ("--base-url", f"{site.url}/apod/", "--webhook", receiver.url, "--json", "--alert-below", "0")
    common += ("--as-of", TODAY.isoformat())
    first = cli("watch", "--once", *common)
    assert first.returncode == 0, first.stderr
    (row,) = [json.loads(line) for line in first.stdout.splitlines()]
    assert row["unusual"] is True and row["anomaly_score"] >= 0.95
    (alert,) = receiver.received
    assert alert["kind"] == "anomaly" and "unusual image (anomaly score" in alert["message"]
    assert alert["anomaly_score"] == row["anomaly_score"]
    forced = cli("watch", "--once", "--force", *common)
    assert forced.returncode == 0 and len(receiver.received) == 1  # once per image, across restarts


def test_failed_deliveries_are_retried_until_delivered(receiver, tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    sessions = make_sessionmaker(engine)
    webhook, jsonl = WebhookNotifier(receiver.url), FileNotifier(tmp_path / "alerts.jsonl")
    with sessions() as session:
        item = IngestedItems(session).save(IngestedItem(key="apod:2024-01-01", source="apod", status="stored"))
        names = [webhook.name, jsonl.name]
        assert Alerts(session).raise_once(item.id, "low_confidence", "unsure", {"key": item.key}, names) is not None
        assert Alerts(session).raise_once(item.id, "low_confidence", "unsure", {"key": item.key}, names) is None
        receiver.fail_next = 2
        t0 = now()
        assert deliver_pending(session, [webhook, jsonl], at=t0) == {"delivered": 1, "retry": 1, "failed": 0}
        # Not due again until its backoff has passed.
        assert deliver_pending(session, [webhook, jsonl], at=t0 + dt.timedelta(seconds=5))["delivered"] == 0
        assert deliver_pending(session, [webhook, jsonl], at=t0 + dt.timedelta(seconds=31))["retry"] == 1
        assert deliver_pending(session, [webhook, jsonl], at=t0 + dt.timedelta(minutes=5))["delivered"] == 1
        assert deliver_pending(session, [webhook, jsonl], at=t0 + dt.timedelta(hours=5)) == {
            "delivered": 0,
            "retry": 0,
            "failed": 0,
        }
        delivery = {d.notifier: d for d in Alerts(session).recent()[0].deliveries}
        assert delivery[webhook.name].attempts == 3 and delivery[webhook.name].status == "delivered"
    assert len(receiver.received) == 1 and receiver.received[0]["key"] == "apod:2024-01-01"
    assert [json.loads(x)["message"] for x in (tmp_path / "alerts.jsonl").read_text().splitlines()] == ["unsure"]


def test_mailbox_notifier_writes_mail(tmp_path):
    MailboxNotifier(tmp_path / "box").send({"alert_id": 7, "message": "look at this", "key": "apod:2024-01-01"})
    box = mailbox.mbox(tmp_path / "box")
    (msg,) = list(box)
    box.close()
    assert msg["Subject"] == "[astroclassify] look at this" and "apod:2024-01-01" in msg.get_payload()


def test_a_hostile_receiver_costs_a_few_kib_and_one_deadline(receiver):
    """A 1 GiB answer was read whole (2.2 GB); a byte every 2 s held send() forever (a byte
    sooner than each read's timeout never trips it: only a deadline for the whole answer does)."""
    import resource

    hook = WebhookNotifier(receiver.url, timeout=1.0)
    receiver.mode = "huge"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="HTTP 500: x+$"):
        hook.send({"alert_id": 1, "message": "m"})
    assert time.monotonic() - start < 1.5
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) < 50_000  # KiB: far below the answer
    assert receiver.sent_bytes < 1 << 30  # the client hung up early
    receiver.mode = "trickle"
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="no complete answer within 1 s"):
        hook.send({"alert_id": 2, "message": "m"})
    assert time.monotonic() - start < 2


def test_watch_learn_runs_a_turn_of_the_loop_after_each_poll(site, cli, tmp_path):
    site.add_day(TODAY, "A picture to learn from")
    polled = cli(
        "watch", "--once", "--base-url", f"{site.url}/apod/", "--no-alert-unusual", "--learn", "dso",
        "--as-of", TODAY.isoformat(),
    )  # fmt: skip
    assert polled.returncode == 0, polled.stderr
    # APOD gives no class labels and no one corrected anything yet: the turn says so and trains nothing
    assert "learn dso: nothing new: no new labels" in polled.stderr
