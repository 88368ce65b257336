"""``astroclassify ingest``, ``watch`` and ``dataset export``: the archive commands of the CLI."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from astroclassify.cli.app import app
from astroclassify.cli.console import err, installation, out
from astroclassify.errors import ConfigError, IngestError

__all__ = ["dataset_app", "ingest", "watch"]

dataset_app = typer.Typer(no_args_is_help=True, help="Build datasets from ingested archive images.")


app.add_typer(dataset_app, name="dataset")

Since = Annotated[str | None, typer.Option(help="First day (YYYY-MM-DD) to ingest.")]
Until = Annotated[str | None, typer.Option(help="Last day (YYYY-MM-DD) to ingest.")]
BaseUrl = Annotated[
    str | None, typer.Option("--base-url", help="Site root to scrape instead of the real one (mirrors, tests).")
]
ApiUrl = Annotated[
    str | None, typer.Option("--api-url", help="APOD API endpoint (default: ASTROCLASSIFY_APOD_API_URL, api.nasa.gov).")
]
Model = Annotated[str, typer.Option("--model", "-m", help="Model that --classify uses (default: the settings').")]
DetectorOption = Annotated[
    Path | None, typer.Option("--detector", help="Anomaly detector folder (default: the model's own).")
]
Category = Annotated[list[str] | None, typer.Option("--category", help="ESA/Hubble categories to crawl (repeatable).")]


@app.command()
def ingest(
    source: Annotated[str, typer.Argument(help="apod or esahubble.")],
    since: Since = None,
    until: Until = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Most new items to handle in this run.")] = None,
    base_url: BaseUrl = None,
    api: Annotated[
        bool, typer.Option("--api", help="APOD: use the official JSON API instead of the HTML site.")
    ] = False,
    api_url: ApiUrl = None,
    api_key: Annotated[str | None, typer.Option(help="APOD API key (default: ASTROCLASSIFY_APOD_API_KEY).")] = None,
    count: Annotated[int, typer.Option(min=0, max=100, help="APOD API: this many random days instead of a range.")] = 0,
    category: Category = None,
    size: Annotated[str, typer.Option(help="ESA/Hubble image size: screen, large, publicationjpg.")] = "screen",
    classify: Annotated[bool, typer.Option("--classify", help="Run the model on each new image.")] = False,
    model: Model = "",
    alert_below: Annotated[
        float | None, typer.Option(help="With --classify: raise an alert under this confidence.")
    ] = None,
    alert_unusual: Annotated[
        bool, typer.Option("--alert-unusual", help="With --classify: raise an alert for images flagged unusual.")
    ] = False,
    detector: DetectorOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per item on stdout.")] = False,
) -> None:
    """Fetch an archive's images with provenance into the store (resumable; duplicates reported)."""
    from astroclassify.ingestion.run import ingest as run_ingest

    if (alert_below is not None or alert_unusual) and not classify:
        raise ConfigError("--alert-below and --alert-unusual need --classify: alerts are raised on the model's answer")
    settings = installation().settings
    sources = _source_options(settings, base_url, api or bool(count), api_url, api_key, category, size, count)
    with installation().open_store() as store, installation().http_client(store) as client:
        result = run_ingest(
            source,
            store,
            client=client,
            options=_options(settings, since, until, limit, alert_below, alert_unusual),
            source_options=sources,
            predictor=installation().predictor(model, detector=detector) if classify else None,
            notifiers=installation().notifiers(log_alerts=alert_below is not None or alert_unusual),
            on_item=_printer(as_json),
        )
    c = result.counts
    err.print(
        f"{source}: {c.get('stored', 0)} stored, {c.get('duplicate', 0)} duplicate, {c.get('skipped', 0)} skipped, "
        f"{c.get('failed', 0)} failed ({result.requests} requests)"
    )
    if result.status in ("failed", "empty"):  # an unreadable listing, or a range without a single item
        raise IngestError(result.error)
    if c.get("failed"):
        raise typer.Exit(1)


@app.command()
def watch(
    source: Annotated[list[str] | None, typer.Option("--source", help="Sources to poll (repeatable).")] = None,
    every: Annotated[str, typer.Option(help="Polling interval: 1d, 6h, 30m, 90s.")] = "1d",
    once: Annotated[bool, typer.Option("--once", help="Poll each source once (if due), deliver alerts, exit.")] = False,
    force: Annotated[bool, typer.Option("--force", help="With --once: poll even if not due yet.")] = False,
    base_url: BaseUrl = None,
    api: Annotated[bool, typer.Option("--api", help="APOD: use the JSON API.")] = False,
    api_url: ApiUrl = None,
    category: Category = None,
    model: Model = "",
    alert_below: Annotated[float, typer.Option(help="Alert when the model's confidence is under this.")] = 0.6,
    alert_unusual: Annotated[
        bool, typer.Option("--alert-unusual/--no-alert-unusual", help="Alert for images the detector flags unusual.")
    ] = True,
    detector: DetectorOption = None,
    webhook: Annotated[list[str] | None, typer.Option(help="POST alerts as JSON to this URL (repeatable).")] = None,
    alerts_file: Annotated[list[Path] | None, typer.Option(help="Append alerts as JSON lines to this file.")] = None,
    mailbox: Annotated[list[Path] | None, typer.Option(help="Append alerts as e-mails to this mbox file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per item on stdout.")] = False,
    learn: Annotated[
        str | None, typer.Option("--learn", metavar="MODEL", help="After each poll, run a turn of `learn MODEL`.")
    ] = None,
    learn_minutes: Annotated[float, typer.Option(min=0, help="Training budget of each learning turn.")] = 30.0,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", metavar="YYYY-MM-DD", help="A first poll looks back a week from this day (default: today)."
        ),
    ] = None,
) -> None:
    """Poll sources on a schedule, ingest and classify new images, and send alerts for unusual ones."""
    from astroclassify.ingestion.catalog import make_source
    from astroclassify.ingestion.watch import watch as run_watch

    settings = installation().settings
    interval = _interval(every)
    options = _source_options(settings, base_url, api, api_url, None, category, "screen", 0, watch=True)
    stop = threading.Event()
    if not once:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        err.print(f"watching {', '.join(source or ['apod'])} every {every} (Ctrl-C to stop)")
    with installation().open_store() as store, installation().http_client(store) as client:
        notifiers = installation().notifiers(webhook or (), alerts_file or (), mailbox or ())
        run_watch(
            [make_source(name, client, options) for name in source or ["apod"]],
            store,
            every=interval,
            client=client,
            options=_options(settings, None, None, None, alert_below, alert_unusual),
            notifiers=notifiers,
            predictor=installation().predictor(model, detector=detector),
            on_item=_printer(as_json),
            after_poll=_learner(learn, store, learn_minutes, notifiers) if learn else None,
            once=once,
            force=force,
            stop=stop,
            as_of=_date(as_of, "--as-of"),
        )


def _learner(model: str, store, minutes: float, notifiers):
    """A turn of the learning loop after each poll; a failed turn is reported, the watch goes on."""
    from astroclassify.errors import AstroClassifyError
    from astroclassify.learning.loop import learn

    def turn(_results) -> None:
        try:
            result = learn(
                model, store=store, max_minutes=minutes, notifiers=notifiers, folders=installation().folders()
            )
            err.print(f"learn {model}: {result.decision}: {result.message}", markup=False, highlight=False)
        except AstroClassifyError as exc:
            err.print(f"learn {model} failed: {exc}", markup=False, highlight=False)

    return turn


@dataset_app.command("export")
def dataset_export(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to create.")],
    source: Annotated[str | None, typer.Option(help="Only this source (apod, esahubble).")] = None,
    category: Annotated[str | None, typer.Option(help="Only this archive category.")] = None,
    since: Since = None,
    until: Until = None,
    labels: Annotated[
        str, typer.Option(help="Labels from: category (archive), feedback (web corrections), model.")
    ] = "category",
) -> None:
    """Write ingested images as a dataset folder (manifest.csv + images/) that `train` reads."""
    from astroclassify.store.export import export_dataset

    with installation().open_store() as store:
        result = export_dataset(
            store, out_dir, labels=labels, source=source, category=category,
            since=_date(since, "--since"), until=_date(until, "--until"),
        )  # fmt: skip
    out.print(f"{result.written} image(s) written to {out_dir}; {result.left_out} left out without a {labels} label")


def _options(settings, since, until, limit, alert_below, alert_unusual=False):
    from astroclassify.ingestion.run import IngestOptions

    return IngestOptions(
        since=_date(since, "--since"),
        until=_date(until, "--until"),
        limit=limit,
        limits=settings.decode_limits,
        alert_below=alert_below,
        alert_unusual=alert_unusual,
    )


def _source_options(settings, base_url, api, api_url, api_key, categories, size, count, watch=False):
    """Command-line flags over settings: a site named with --base-url is the only one tried."""
    from astroclassify.ingestion.sources import SourceOptions

    return SourceOptions(
        base_url=base_url,
        sites=(settings.apod_base_url, *settings.apod_mirrors),
        api=api or bool(api_url),
        api_url=api_url or settings.apod_api_url,
        api_key=api_key or settings.apod_api_key,
        count=count,
        categories=tuple(categories or ()),
        size=size,
        watch=watch,
    )


def _printer(as_json: bool):
    def emit(outcome) -> None:
        if as_json:
            print(json.dumps(dataclasses.asdict(outcome), ensure_ascii=False), flush=True)
            return
        row = dataclasses.asdict(outcome)
        note = row.get("error") or row.get("reason") or ""
        label = f"{row['label']} {row['confidence']:.2f}" if row.get("confidence") is not None else ""
        err.print(f"{row['status']:<9} {row['date'] or row['key']:<10} {row['title'][:50]:<50} {label} {note}")

    return emit


def _date(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{option} must be a date like 2024-12-31; got {value!r}") from None


def _interval(value: str) -> dt.timedelta:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", value.strip())
    if not m:
        raise ConfigError(f"--every must look like 1d, 6h, 30m or 90s; got {value!r}")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
    return dt.timedelta(**{unit: float(m.group(1))})
