"""``predict``, ``explain`` and ``evaluate``: a model's answers on images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from astroclassify.classifier import FailedPrediction, Prediction
from astroclassify.cli.app import app
from astroclassify.cli.console import Bars, err, error, installation, out
from astroclassify.errors import AstroClassifyError


@app.command()
def predict(
    inputs: Annotated[list[Path], typer.Argument(help="Image files or folders (searched recursively).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Bundled model name or model folder.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    tta: Annotated[
        str | None, typer.Option(help="Test-time augmentation: none, rot4, rot4flip (default: the model's).")
    ] = None,
    batch_size: Annotated[
        int, typer.Option(min=1, max=256, help="Images per ONNX Runtime run (faster up to about 16; memory grows).")
    ] = 16,
    detector: Annotated[
        Path | None, typer.Option(help="Anomaly detector folder (default: the model's own, if it has one).")
    ] = None,
) -> None:
    """Classify images with calibrated confidence and an anomaly score (ONNX Runtime; no torch needed)."""
    from astroclassify.imaging.files import find_images

    clf = installation().classifier(model, detector=detector)
    found = find_images(inputs)
    if found.skipped:
        err.print(found.skipped_summary(), markup=False, highlight=False)
    if not found.files:
        raise AstroClassifyError("no image files found in the given folders")
    failures = 0
    names = _short_names(inputs, found.files)
    table = _prediction_table(
        clf.classes_, names.values(), anomaly=clf.predictor.detector is not None, tags=clf.predictor.tag_names
    )
    with Bars(enabled=not as_json and len(found.files) > batch_size) as bars:
        advance = bars("classifying", len(found.files))
        results = []
        for result in clf.predict_iter(found.files, batch_size=batch_size, tta=tta):
            advance(1)
            if as_json:  # stream JSON lines as they come
                failures += _emit(result, table, as_json)
            else:
                results.append(result)
    for result in results:
        failures += _emit(result, table, as_json, names.get(result.source))
    if not as_json and table.row_count:
        out.print(table)
        tags = clf.predictor.tag_names
        if tags and "tags" not in [c.header for c in table.columns]:
            out.print("tags not shown at this width: use --json or a wider terminal", highlight=False)
        unusual = [r for r in results if isinstance(r, Prediction) and r.unusual]
        if unusual:  # one short line; which ones are marked ! in the anomaly column
            out.print(f"{len(unusual)} of {len(results)} image(s) unusual (!): unlike what the model was trained on")
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


def _prediction_table(labels: tuple[str, ...], names, *, anomaly: bool = False, tags: tuple[str, ...] = ()) -> Table:
    """One row per image; per-class columns only where they fit, and never a cut label.

    Where the terminal is too narrow for a column per class, the runner-up class and its
    probability replace them (a 6-class model in 80 columns). With a detector, the anomaly
    score is a column of its own, ``!`` marking the images flagged unusual. A model with tag
    heads gets a last column of its tags (probabilities or predicted vote fractions) where the
    terminal has room for it; ``--json`` always carries them.
    """
    file_width = min(max((len(n) for n in names), default=4), 40)
    label_width = max(len(lb) for lb in labels)
    full = file_width + label_width + 10 + sum(max(len(lb), 5) + 2 for lb in labels) + 8 + (9 if anomaly else 0)
    table = Table(box=None)
    table.add_column("file", overflow="fold")
    table.add_column("label", no_wrap=True, min_width=label_width)
    table.add_column("confidence", no_wrap=True)
    if full <= out.width:
        for label in labels:
            table.add_column(label, no_wrap=True, min_width=len(label))
    else:
        table.add_column("runner-up", no_wrap=True, min_width=label_width + 6)
    if anomaly:
        table.add_column("anomaly", no_wrap=True, justify="right")
    narrow = file_width + label_width + 10 + label_width + 8 + (9 if anomaly else 0)
    if tags and min(full, narrow) + sum(len(t) + 7 for t in tags) <= out.width:
        table.add_column("tags", no_wrap=True)
    return table


def _emit(pred: Prediction | FailedPrediction, table: Table, as_json: bool, name: str | None = None) -> int:
    """Print one prediction (or its error); returns 1 for a failed file."""
    if isinstance(pred, FailedPrediction):
        error(f"{pred.source}: {pred.error}")
        if as_json:
            print(json.dumps(pred.to_dict()), flush=True)
        return 1
    if as_json:
        print(json.dumps(pred.to_dict()), flush=True)
        return 0
    headers = [c.header for c in table.columns]
    anomaly, tags = "anomaly" in headers, "tags" in headers
    if len(table.columns) - anomaly - tags == 3 + len(pred.probabilities):
        cells = [f"{p:.3f}" for p in pred.probabilities.values()]
    else:
        second = sorted(pred.probabilities.items(), key=lambda kv: -kv[1])[1:2]
        cells = [f"{k} {v:.3f}" for k, v in second] or [""]
    if anomaly:
        score = "" if pred.anomaly_score is None else f"{pred.anomaly_score:.2f}" + (" !" if pred.unusual else "  ")
        cells.append(score)
    if tags:
        cells.append(", ".join(f"{k} {v:.2f}" for k, v in pred.tags.items()))
    table.add_row(name or pred.source, pred.label, f"{pred.confidence:.3f}", *cells)
    return 0


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
    predictor = installation().predictor(model)
    result = predictor.explain(image, label, tta)
    target.parent.mkdir(parents=True, exist_ok=True)
    result.overlay().save(target, format="PNG")
    probs = ", ".join(f"{name} {p:.3f}" for name, p in zip(predictor.labels, result.probabilities, strict=True))
    seen = "" if result.seen == "the whole picture" else f"; the model saw {result.seen} (outlined)"
    out.print(f"{image}: explained {result.label} ({probs}); overlay written to {target}{seen}")


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

    settings = installation().settings
    with Bars(enabled=not as_json) as bars:
        predictor = installation().predictor(model)
        result = run_evaluation(
            predictor, data, split=split, tta=tta, taxonomy=taxonomy, folders=installation().folders(), progress=bars
        )
    for line in result.problems:  # valid inputs were scored regardless; the exit code flags the rest
        error(line)
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
