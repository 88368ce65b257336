"""The ``astroclassify`` command: parse, call, print. Errors print one line and exit non-zero."""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from astroclassify.errors import AstroClassifyError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Classify astronomical images.")
data_app = typer.Typer(no_args_is_help=True, help="Check, fetch and split datasets.")
app.add_typer(data_app, name="data")
feedback_app = typer.Typer(no_args_is_help=True, help="Work with corrections submitted in the web app.")
app.add_typer(feedback_app, name="feedback")
keys_app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys for the REST API.")
app.add_typer(keys_app, name="keys")

out = Console()
err = Console(stderr=True)
log = logging.getLogger("astroclassify")


def _print_version(value: bool) -> None:
    if value:
        from astroclassify._version import __version__

        print(f"astroclassify {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Classify astronomical images."""


def _settings():
    from astroclassify.config import get_settings

    return get_settings()


def _predictor(model: str = "", detector: Path | None = None):
    """The model named on the command line (default: the settings'), with the settings' limits."""
    from astroclassify.inference.predictor import OnnxPredictor

    settings = _settings()
    return OnnxPredictor(model or settings.default_model, detector=detector, **settings.predictor_options())


def _error(message: str) -> None:
    """One line on stderr, never wrapped (scripts grep these)."""
    print(f"error: {message}", file=sys.stderr, flush=True)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False, show_time=False)],
        force=True,
    )


class _Bars:
    """Rich progress bars behind the library's ``progress(description, total)`` hook."""

    def __init__(self, enabled: bool = True) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<18}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=not enabled,
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.progress.live.is_started:
            self.progress.__exit__(*exc)

    def __call__(self, description: str, total: int):
        """Starts the bars with the first task, so an error before any work prints no blank line."""
        if not self.progress.live.is_started:
            self.progress.__enter__()
        task = self.progress.add_task(description, total=total or None)  # 0: unknown length
        return lambda n=1: self.progress.advance(task, n)


@app.command()
def predict(
    inputs: Annotated[list[Path], typer.Argument(help="Image files or folders (searched recursively).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Bundled model name or model folder.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    tta: Annotated[
        str | None, typer.Option(help="Test-time augmentation: none, rot4, rot4flip (default: the model's).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=256)] = 16,
    detector: Annotated[
        Path | None, typer.Option(help="Anomaly detector folder (default: the model's own, if it has one).")
    ] = None,
) -> None:
    """Classify images with calibrated confidence and an anomaly score (ONNX Runtime; no torch needed)."""
    from astroclassify.imaging.files import find_images

    predictor = _predictor(model, detector)
    found = find_images(inputs)
    if found.skipped:
        err.print(found.skipped_summary(), markup=False, highlight=False)
    if not found.files:
        raise AstroClassifyError("no image files found in the given folders")
    failures = 0
    names = _short_names(inputs, found.files)
    table = _prediction_table(predictor.labels, names.values())
    with _Bars(enabled=not as_json and len(found.files) > batch_size) as bars:
        advance = bars("classifying", len(found.files))
        outcomes = []
        for outcome in predictor.run(found.files, batch_size=batch_size, tta=tta):
            advance(1)
            if as_json:  # stream JSON lines as they come
                failures += _emit(outcome, predictor.labels, table, as_json)
            else:
                outcomes.append(outcome)
    for outcome in outcomes:
        failures += _emit(outcome, predictor.labels, table, as_json, names.get(outcome.source))
    if not as_json and table.row_count:
        out.print(table)
        unusual = [f"{names.get(o.source, o.source)} ({o.anomaly_score:.2f})" for o in outcomes if o.unusual]
        if unusual:
            out.print(f"unusual (anomaly score): {', '.join(unusual)}", highlight=False)
    if failures:
        raise typer.Exit(1)


def _short_names(inputs: list[Path], files: list[Path]) -> dict[str, str]:
    """How each file is shown in a table: its name, or its path inside the folder given.

    Full paths wrap every few characters in an 80-column terminal; JSON keeps them whole.
    Where two files would show the same short name, both keep their full path.
    """
    folders = [p for p in inputs if p.is_dir()]
    short = {}
    for f in files:
        inside = next((f.relative_to(d) for d in folders if f.is_relative_to(d)), None)
        short[str(f)] = (inside or Path(f.name)).as_posix()
    clashes = {n for n in short.values() if list(short.values()).count(n) > 1}
    return {k: (k if v in clashes else v) for k, v in short.items()}


def _prediction_table(labels: tuple[str, ...], names) -> Table:
    """One row per image; per-class columns only where they fit, and never a cut label.

    Where the terminal is too narrow for a column per class, the runner-up class and its
    probability replace them (a 6-class model in 80 columns).
    """
    file_width = min(max((len(n) for n in names), default=4), 40)
    label_width = max(len(lb) for lb in labels)
    full = file_width + label_width + 10 + sum(max(len(lb), 5) + 2 for lb in labels) + 8
    table = Table(box=None)
    table.add_column("file", overflow="fold")
    table.add_column("label", no_wrap=True, min_width=label_width)
    table.add_column("confidence", no_wrap=True)
    if full <= out.width:
        for label in labels:
            table.add_column(label, no_wrap=True, min_width=len(label))
    else:
        table.add_column("runner-up", no_wrap=True, min_width=label_width + 6)
    return table


@app.command()
def ensemble(
    models: Annotated[list[str], typer.Argument(help="Two or more model folders or names (same classes and split).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Ensemble model folder to write.")],
    name: Annotated[str | None, typer.Option(help="Model name shown to users.")] = None,
    tta: Annotated[
        str | None, typer.Option(help="Default test-time augmentation (default: the first member's).")
    ] = None,
) -> None:
    """Average several models' calibrated probabilities in one ONNX model; score it against its members."""
    from astroclassify.evaluation.ensemble import build_ensemble

    command = "astroclassify " + shlex.join(sys.argv[1:])
    with _Bars() as bars:
        result = build_ensemble(
            models, out_dir, name=name, tta=tta, command=command, models_dir=_settings().models_dir, progress=bars
        )
    table = Table("model", "n", "accuracy", "macro-F1", "ECE")
    for label, e in result.scores.items():
        m = e.metrics
        table.add_row(label, str(m["n"]), f"{m['accuracy']:.3f}", f"{m['macro_f1']:.3f}", f"{m['ece']:.3f}")
    out.print(table)
    sources = ", ".join(result.bundle.meta["training"]["config"]["data"])
    out.print(f"ensemble written to {out_dir} (test split of {sources}, never trained on by any member)")


@app.command()
def card(
    model: Annotated[str, typer.Argument(help="Model folder (or bundled name, in a source checkout).")],
    limit: Annotated[
        list[str] | None,
        typer.Option("--limit", help="A line for the card's Limits section (repeatable; replaces them)."),
    ] = None,
) -> None:
    """Re-score a model's held-out test split and rewrite its metrics (with 95% intervals), plots and MODEL_CARD.md."""
    from astroclassify.evaluation.card import refresh_model_card

    with _Bars() as bars:
        path = refresh_model_card(model, limits=limit, models_dir=_settings().models_dir, progress=bars)
    out.print(f"model card rewritten: {path}")


@app.command()
def taxonomies() -> None:
    """List the built-in label taxonomies (use a YAML file path for your own)."""
    from astroclassify.data.taxonomy import builtin_taxonomies, load_taxonomy

    table = Table(box=None)
    for column in ("name", "classes", "mirror", "description"):
        table.add_column(column, overflow="fold")
    for name in builtin_taxonomies():
        t = load_taxonomy(name)
        mirror = ", ".join(f"{a}↔{b}" for a, b in t.mirror.items() if a < b)
        table.add_row(name, ", ".join(t.labels), mirror, t.description)
    out.print(table)


@app.command()
def explain(
    image: Annotated[Path, typer.Argument(help="The image to explain.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Bundled model name or model folder.")] = "",
    out_path: Annotated[
        Path | None, typer.Option("--out", "-o", help="Overlay PNG to write (default: IMAGE.gradcam.png here).")
    ] = None,
    label: Annotated[str | None, typer.Option(help="Class to explain (default: the predicted one).")] = None,
    tta: Annotated[str | None, typer.Option(help="Test-time augmentation (default: the model's).")] = None,
) -> None:
    """Grad-CAM overlay: which parts of the image made the model choose a class."""
    target = out_path or Path(f"{image.stem}.gradcam.png")
    if target.suffix.lower() != ".png":
        raise AstroClassifyError(f"--out must end in .png; got {target}")
    predictor = _predictor(model)
    result = predictor.explain(image, label, tta)
    target.parent.mkdir(parents=True, exist_ok=True)
    result.overlay().save(target, format="PNG")
    probs = ", ".join(f"{name} {p:.3f}" for name, p in zip(predictor.labels, result.probabilities, strict=True))
    out.print(f"{image}: explained {result.label} ({probs}); overlay written to {target}")


def _emit(outcome, labels, table: Table, as_json: bool, name: str | None = None) -> int:
    """Print one prediction (or its error); returns 1 for a failed file."""
    from astroclassify.classifier import to_prediction

    if outcome.error is not None:
        _error(f"{outcome.source}: {outcome.error}")
        if as_json:
            print(json.dumps({"file": outcome.source, "error": outcome.error}), flush=True)
        return 1
    pred = to_prediction(outcome.source, outcome.probabilities, labels, outcome.anomaly_score, outcome.unusual)
    if as_json:
        print(json.dumps(pred.to_dict()), flush=True)
        return 0
    if len(table.columns) == 3 + len(labels):
        cells = [f"{p:.3f}" for p in pred.probabilities.values()]
    else:
        second = sorted(pred.probabilities.items(), key=lambda kv: -kv[1])[1:2]
        cells = [f"{k} {v:.3f}" for k, v in second] or [""]
    table.add_row(name or pred.source, pred.label, f"{pred.confidence:.3f}", *cells)
    return 0


@app.command()
def evaluate(
    model: Annotated[str, typer.Option("--model", "-m", help="Bundled model name or model folder.")],
    data: Annotated[list[str], typer.Option("--data", "-d", help="Dataset folder or collection name (repeatable).")],
    split: Annotated[
        str, typer.Option(help="auto: only images the model never trained on; or test, val, train, all.")
    ] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    tta: Annotated[str | None, typer.Option(help="Override the model's test-time augmentation.")] = None,
    taxonomy: Annotated[
        str | None,
        typer.Option(help="Map dataset labels with this taxonomy (default: the one the model was trained with)."),
    ] = None,
    report_dir: Annotated[
        Path | None,
        typer.Option(help="Where to write report.html and plots (default: the model folder, or ./<model>-report)."),
    ] = None,
) -> None:
    """Score a model: accuracy, macro-F1, per-class P/R/F1, confusion matrix, ECE."""
    from astroclassify.evaluation.evaluate import evaluate as run_evaluation
    from astroclassify.evaluation.metrics import with_interval

    settings = _settings()
    with _Bars(enabled=not as_json) as bars:
        predictor = _predictor(model)
        result = run_evaluation(predictor, data, split=split, tta=tta, taxonomy=taxonomy, progress=bars)
    for line in result.problems:  # valid inputs were scored regardless; the exit code flags the rest
        _error(line)
    m = result.metrics
    if as_json:
        print(json.dumps(m))
        raise typer.Exit(1 if result.problems else 0)
    report = result.write_report(report_dir, fallback=settings.home / "reports" / predictor.bundle.name)
    ci = m["ci"]
    out.print(
        f"[bold]{result.title}[/]: n={m['n']}  accuracy {with_interval(m['accuracy'], ci['accuracy'])}  "
        f"macro-F1 {with_interval(m['macro_f1'], ci['macro_f1'])}  ECE {with_interval(m['ece'], ci['ece'])} "
        f"(uncalibrated {m['ece_uncalibrated']:.3f}); 95% intervals: {ci['method']}",
        highlight=False,
    )
    t = Table("class", "precision", "recall", "F1", "F1 95% interval", "support")
    for label, c in m["per_class"].items():
        # A class absent from the scored images has no recall or F1 to speak of: show a dash.
        cells = [f"{c[k]:.3f}" if c["support"] else "–" for k in ("precision", "recall", "f1")]
        interval = c.get("f1_ci")
        t.add_row(label, *cells, f"{interval[0]:.2f}–{interval[1]:.2f}" if interval else "–", str(c["support"]))
    out.print(t)
    out.print(_confusion_table(m["confusion_matrix"]))
    for what, value in (
        ("not scored, seen in training", m["excluded_seen_in_training"]),
        ("not scored, unknown labels", m["unknown_labels"]),
    ):
        if value:
            out.print(f"{what}: {value}")
    out.print(f"report: {report}")
    if result.problems:
        raise typer.Exit(1)


def _confusion_table(cm: dict) -> Table:
    """Rows true, columns predicted; columns are numbered where class names would not fit."""
    labels = cm["labels"]
    width = 18 + sum(max(len(lb), 4) + 3 for lb in labels)
    numbered = width > out.width
    heads = [str(i + 1) for i in range(len(labels))] if numbered else labels
    table = Table("true \\ predicted", *heads)
    for i, (label, row) in enumerate(zip(labels, cm["matrix"], strict=True)):
        table.add_row(f"{i + 1} {label}" if numbered else label, *map(str, row))
    return table


@app.command()
def train(
    data: Annotated[
        list[str],
        typer.Option("--data", "-d", help="Dataset folder or collection name (repeatable; labels merge by name)."),
    ],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Architecture (see `astroclassify models`).")
    ] = "efficientnet_lite0",
    epochs: Annotated[int | None, typer.Option(min=1)] = None,
    image_size: Annotated[int | None, typer.Option(min=32, max=1024)] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    name: Annotated[str | None, typer.Option(help="Model name shown to users.")] = None,
    taxonomy: Annotated[
        str | None,
        typer.Option(help="Label mapping: a built-in name (see `astroclassify taxonomies`) or a YAML file."),
    ] = None,
    cv: Annotated[int, typer.Option(help="Run K-fold grouped cross-validation instead (writes cv.json).")] = 0,
    fresh: Annotated[bool, typer.Option(help="Ignore an existing checkpoint instead of resuming.")] = False,
    option: Annotated[
        list[str] | None, typer.Option("--set", help="Any training option as key=value (repeatable).")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose/--quiet")] = True,
) -> None:
    """Train a model; resumes from OUT/checkpoint.pt when one exists."""
    from astroclassify.config import tcmalloc_env

    env = tcmalloc_env()
    if env is not None:  # restart once with tcmalloc preloaded (faster torch on CPU)
        os.execve(sys.executable, [sys.executable, "-m", "astroclassify.cli", *sys.argv[1:]], env)
    _setup_logging(verbose)
    import dataclasses

    from astroclassify.training.config import TrainConfig, apply_overrides

    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "epochs": epochs,
            "image_size": image_size,
            "seed": seed,
            "name": name,
            "taxonomy": taxonomy,
        }.items()
        if v is not None
    }
    command = "astroclassify " + shlex.join(sys.argv[1:])
    cfg = TrainConfig(data=tuple(data), out=str(out_dir), model=model, extra={"command": command}, **overrides)
    cfg = apply_overrides(cfg, option or [])
    from astroclassify.training.train import cross_validate
    from astroclassify.training.train import train as run_training

    if cv:
        with _Bars() as bars:
            result = cross_validate(dataclasses.replace(cfg, folds=cv), out_dir, progress=bars)
        s = result.summary
        out.print(
            f"{len(s['folds'])}-fold grouped CV: accuracy {s['accuracy_mean']:.3f} ± {s['accuracy_std']:.3f}, "
            f"macro-F1 {s['macro_f1_mean']:.3f} ± {s['macro_f1_std']:.3f}; "
            f"{len(s['suspected_label_errors'])} suspected label errors; written to {result.path}"
        )
        return
    with _Bars() as bars:
        trained = run_training(cfg, progress=bars, resume=not fresh)
    for scope, m in trained.test_metrics.items():
        out.print(
            f"test \\[{scope}]: n={m['n']} accuracy {m['accuracy']:.3f} macro-F1 {m['macro_f1']:.3f} ECE {m['ece']:.3f}"
        )
    out.print(f"model written to {trained.path} ({trained.bundle.meta['training']['seconds']} s)")
    for line in trained.skipped:
        _error(f"skipped {line}")
    if trained.skipped:
        raise typer.Exit(1)  # the model was written from the valid images; the exit code flags the rest


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    model: Annotated[
        str, typer.Option("--model", "-m", help="Default model (bundled name or folder); every model is served.")
    ] = "",
    tta: Annotated[
        str | None,
        typer.Option(
            help="Test-time augmentation: model (each model's own, the default), none (fastest), rot4, rot4flip."
        ),
    ] = None,
    detector: Annotated[
        Path | None, typer.Option(help="Anomaly detector folder for the default model (default: its own).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, max=64, help="Server processes (default: one per core, one ORT thread each).")
    ] = None,
) -> None:
    """Run the web app and REST API (upload page at /, OpenAPI at /docs)."""
    from astroclassify.config import get_settings
    from astroclassify.inference.bundle import load_bundle
    from astroclassify.web.guard import LOOPBACK_HOSTS, is_loopback
    from astroclassify.web.server import serve as run_server

    settings = get_settings()
    load_bundle(model or settings.default_model)  # fail fast with a one-line error
    if tta is not None:
        if tta not in ("none", "rot4", "rot4flip", "model"):
            raise AstroClassifyError(f"--tta must be none, rot4, rot4flip or model; got {tta!r}")
        settings = settings.model_copy(update={"serve_tta": tta})
    if not settings.allowed_hosts and not is_loopback(host):
        # Answer to the address bound; a wildcard bind cannot know the names clients use.
        wildcard = host in ("0.0.0.0", "::", "")
        settings = settings.model_copy(update={"allowed_hosts": ["*"] if wildcard else [*LOOPBACK_HOSTS, host]})
        if wildcard:
            err.print("warning: answering any Host header; set ASTROCLASSIFY_ALLOWED_HOSTS to this server's names")
    _setup_logging(verbose=True)
    auth = {
        True: "API keys required",
        False: "no API key required",
        None: "API keys required for clients on other machines",
    }[settings.require_api_key]
    n = workers or os.cpu_count() or 1
    out.print(f"serving on http://{host}:{port} ({auth}; {n} worker process(es); Ctrl-C to stop)")
    run_server(settings, host=host, port=port, workers=n, model=model or None, detector=detector)


def _store():
    from astroclassify.store import open_store

    settings = _settings()
    return open_store(settings.home, settings.database_url)


@feedback_app.command("export")
def feedback_export(out_dir: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to create.")]) -> None:
    """Write corrected images as a dataset folder (manifest.csv + images/), ready for `train`."""
    from astroclassify.store.export import export_feedback

    with _store() as store:
        n = export_feedback(store, out_dir)
    out.print(f"{n} corrected image(s) written to {out_dir}")


@keys_app.command("create")
def keys_create(name: Annotated[str, typer.Argument(help="A name for the key's holder.")]) -> None:
    """Create a key and print it once; only its hash is stored."""
    from astroclassify.store.api_keys import ApiKeys

    with _store() as store, store.session() as session:
        record, key = ApiKeys(session).create(name)
    print(key)
    err.print(f"key {record.name!r} created; store it now, it cannot be shown again")


@keys_app.command("list")
def keys_list() -> None:
    """List keys (names and prefixes, never the keys)."""
    from astroclassify.store.api_keys import ApiKeys

    with _store() as store, store.session() as session:
        keys = ApiKeys(session).all()
    t = Table("name", "prefix", "created", "revoked", box=None)
    for k in keys:
        t.add_row(k.name, f"ac_{k.prefix}_…", str(k.created_at)[:19], str(k.revoked_at)[:19] if k.revoked_at else "")
    out.print(t)


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke a key: requests with it get 401 from then on."""
    from astroclassify.store.api_keys import ApiKeys

    with _store() as store, store.session() as session:
        ApiKeys(session).revoke(name)
    out.print(f"key {name!r} revoked")


@app.command()
def models() -> None:
    """List bundled and user models, and the trainable architectures."""
    from astroclassify.inference.bundle import available_models, load_bundle

    t = Table("model", "where", "classes", "test accuracy", box=None)
    for entry in available_models(_settings().models_dir):
        b = load_bundle(entry.path)
        acc = b.meta.get("metrics", {}).get("test", {}).get("all", {}).get("accuracy")
        where = "bundled" if entry.where == "bundled" else str(entry.path)
        t.add_row(entry.name, where, ", ".join(b.labels), f"{acc:.3f}" if acc is not None else "-")
    out.print(t)
    try:
        from astroclassify.models import list_models

        out.print("architectures: " + ", ".join(list_models()))
    except ImportError:
        out.print("architectures: install the 'train' extra (torch) to train models")


@data_app.command("check")
def data_check(
    folder: Annotated[str, typer.Argument(help="Dataset folder or collection name.")],
    labels: Annotated[str | None, typer.Option(help="Comma-separated allowed labels.")] = None,
    decode: Annotated[bool, typer.Option(help="Decode every image (slower, finds corrupt files).")] = True,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Validate a dataset: files, checksums, duplicates, labels, class counts."""
    from astroclassify import datasets

    allowed = {s.strip() for s in labels.split(",")} if labels else None
    with _Bars(enabled=not as_json) as bars:
        report = datasets.check(folder, labels=allowed, decode=decode, data_dir=_settings().data_dir, progress=bars)
    ds = report.dataset
    if as_json:
        summary = {"ok": report.ok, "n": len(ds.samples), "classes": ds.class_counts()}
        print(json.dumps(summary | {"errors": report.errors, "warnings": report.warnings}))
    else:
        t = Table("label", "images", box=None)
        for label, n in ds.class_counts().items():
            t.add_row(label, str(n))
        out.print(f"[bold]{ds.root}[/]: {len(ds.samples)} images")
        out.print(t)
        for w in report.warnings:
            out.print(f"warning: {w}", markup=False, highlight=False)
        for e in report.errors:
            _error(e)
        out.print("[green]ok[/]" if report.ok else f"[red]{len(report.errors)} error(s)[/]")
    if not report.ok:
        raise typer.Exit(1)


@data_app.command("fetch")
def data_fetch(
    source: Annotated[str, typer.Argument(help="Collection name, folder, archive or http(s) URL of an archive.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder to create.")],
) -> None:
    """Copy or download a dataset and verify every file's SHA-256 against its manifest."""
    from astroclassify import datasets

    with _Bars() as bars:
        n = datasets.fetch(source, out_dir, progress=bars("verifying", 0))
    out.print(f"{n} files verified into {out_dir}")


@data_app.command("split")
def data_split(
    data: Annotated[list[str], typer.Argument(help="Dataset folders or collection names.")],
    out_file: Annotated[Path, typer.Option("--out", "-o", help="splits.csv to write.")],
    seed: int = 0,
    test_frac: float = 0.2,
    val_frac: float = 0.15,
    folds: int = 5,
    image_size: int = 64,
) -> None:
    """Write grouped, stratified, seeded train/val/test splits (and CV folds) to a CSV."""
    from astroclassify import datasets

    with _Bars() as bars:
        result = datasets.split(
            data, out_file, seed=seed, test_frac=test_frac, val_frac=val_frac, folds=folds,
            image_size=image_size, data_dir=_settings().data_dir, progress=bars,
        )  # fmt: skip
    out.print(
        f"{out_file}: {result.counts}, {result.groups} groups, {result.near_duplicate_pairs} near-duplicate pairs, "
        f"{result.label_conflicts} label conflicts"
    )


def _register_archive_commands() -> None:
    from astroclassify import cli_anomalies, cli_batch, cli_ingest

    cli_ingest.register(app)
    cli_anomalies.register(app)
    cli_batch.register(app)


_register_archive_commands()


def main() -> None:
    """Entry point: Typer handles usage errors (its own message, exit 2); ours print one line.

    Typer runs in standalone mode, so usage errors never reach this function: they are
    handled by whichever click Typer uses (releases from 0.22 on vendor it as
    ``typer._click``, so catching ``click.ClickException`` here would miss them).
    """
    try:
        app(prog_name="astroclassify")
    except AstroClassifyError as exc:
        _error(str(exc).replace("\n", " "))
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # a bug: one line for users, the traceback on request
        if _debug():
            raise
        from astroclassify.store.full import FULL_MESSAGE, is_storage_full

        if is_storage_full(exc):  # the database noticed first: the operator's problem, not a bug
            _error(FULL_MESSAGE)
            sys.exit(2)
        _error(
            f"internal error: {type(exc).__name__}: {exc} (set ASTROCLASSIFY_DEBUG=1 for the traceback and please report it)"
        )
        sys.exit(3)


def _debug() -> bool:
    from astroclassify.config import get_settings

    try:
        return get_settings().debug
    except AstroClassifyError:
        return False


if __name__ == "__main__":
    main()
