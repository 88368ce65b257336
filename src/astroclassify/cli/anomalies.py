"""``astroclassify anomalies fit|evaluate|simulate|mark|export`` and ``similar``: the discovery commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from astroclassify.cli.app import app
from astroclassify.cli.console import Bars, err, installation, out

__all__ = ["anomalies_app", "similar"]

anomalies_app = typer.Typer(no_args_is_help=True, help="Fit, measure and use anomaly detectors; mark images.")

app.add_typer(anomalies_app, name="anomalies")

Model = Annotated[str, typer.Option("--model", "-m", help="Model name or folder (default: the settings').")]
Detector = Annotated[
    Path | None, typer.Option("--detector", help="Detector folder (default: the model's own detector/).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


@anomalies_app.command("fit")
def fit(
    model: Model = "",
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--data", "-d", help="Reference images, NAME_OR_DIR[:LABEL,...] (default: the model's training images)."
        ),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", "-o", help="Detector folder (default: MODEL/detector).")
    ] = None,
    held_out: Annotated[float, typer.Option(min=0.05, max=0.5, help="With --data: share that calibrates.")] = 0.2,
    fraction: Annotated[
        float,
        typer.Option(min=0.05, max=1.0, help="With --data: use this seeded share, leave the rest for evaluation."),
    ] = 1.0,
    false_alarm_rate: Annotated[
        float, typer.Option(min=0.001, max=0.5, help="Share of typical images flagged unusual.")
    ] = 0.05,
) -> None:
    """Fit kNN, Mahalanobis, isolation-forest and energy detectors on a model's embeddings."""
    from astroclassify.discovery.fitting import fit_anomalies

    inst = installation()  # read the settings once
    with Bars() as bars:
        result = fit_anomalies(
            inst.settings.model_or_default(model),
            data or None,
            out=out_dir,
            held_out=held_out,
            fraction=fraction,
            false_alarm_rate=false_alarm_rate,
            folders=inst.folders(),
            progress=bars,
        )
    for line in result.failed:
        err.print(f"skipped {line}", markup=False, highlight=False)
    out.print(
        f"detector written to {result.path}: {result.n_reference} reference and {result.n_held_out} held-out images; "
        f"{result.held_out_unusual:.1%} of the held-out ones flagged unusual",
        highlight=False,
    )


@anomalies_app.command("evaluate")
def evaluate(
    in_data: Annotated[list[str], typer.Option("--in", help="Typical images, NAME_OR_DIR[:LABEL,...] (repeatable).")],
    out_data: Annotated[list[str], typer.Option("--out", help="Unusual images, NAME_OR_DIR[:LABEL,...] (repeatable).")],
    model: Model = "",
    detector: Detector = None,
    as_json: AsJson = False,
) -> None:
    """AUROC, FPR at 95% TPR and precision@k of the anomaly score (and of each detector)."""
    from astroclassify.discovery.evaluation import evaluate_anomalies

    inst = installation()  # read the settings once
    with Bars(not as_json) as bars:
        result = evaluate_anomalies(
            inst.settings.model_or_default(model),
            in_data,
            out_data,
            detector=detector,
            folders=inst.folders(),
            progress=bars,
        )
    m = result.metrics
    if as_json:
        print(json.dumps(m))
        return
    from rich.table import Table

    lo, hi = m["auroc_ci"]
    out.print(
        f"n_in={m['n_in']} n_out={m['n_out']}  AUROC {m['auroc']:.3f} [{lo:.2f}, {hi:.2f}]  "
        f"FPR@95%TPR {m['fpr_at_95_tpr']:.3f}  unusual: {m['unusual_rate']['in']:.1%} of in, "
        f"{m['unusual_rate']['out']:.1%} of out",
        highlight=False,
    )
    table = Table("detector", "weight", "AUROC", "FPR@95%TPR", *[f"P@{k}" for k in m["precision_at_k"]])
    rows = [("combined", m, "")] + [(n, d, f"{m['weights'].get(n, 0):g}") for n, d in m["detectors"].items()]
    for name, d, weight in rows:
        table.add_row(
            name,
            weight,
            f"{d['auroc']:.3f}",
            f"{d['fpr_at_95_tpr']:.3f}",
            *[f"{v:.2f}" for v in d["precision_at_k"].values()],
        )
    out.print(table)
    if m["excluded_fitted"]:
        out.print(f"left out {m['excluded_fitted']} image(s) the detector was fitted on", highlight=False)


@anomalies_app.command("simulate")
def simulate(
    pool: Annotated[list[str], typer.Option("--pool", help="Images to rank, NAME_OR_DIR[:LABEL,...] (repeatable).")],
    target: Annotated[list[str], typer.Option("--target", help="Label an astronomer finds interesting (repeatable).")],
    model: Model = "",
    detector: Detector = None,
    marks: Annotated[int, typer.Option(min=1, help="Images marked in all.")] = 30,
    rounds: Annotated[int, typer.Option(min=1, help="Marking rounds (re-rank after each).")] = 3,
    seed: Annotated[int, typer.Option(help="Breaks ties in the first ranking.")] = 0,
    as_json: AsJson = False,
) -> None:
    """Play an astronomer: mark the top-ranked images each round, re-rank, and measure."""
    from astroclassify.discovery.evaluation import simulate_marks

    inst = installation()  # read the settings once
    with Bars(not as_json) as bars:
        result = simulate_marks(
            inst.settings.model_or_default(model),
            pool,
            target,
            marks=marks,
            rounds=rounds,
            seed=seed,
            detector=detector,
            folders=inst.folders(),
            progress=bars,
        )
    if as_json:
        print(json.dumps(result.metrics))
        return
    m = result.metrics
    out.print(
        f"{m['marks']} marks in {m['rounds']} rounds ({m['found']} interesting) over {m['n_pool']} images "
        f"({m['n_target']} {'/'.join(m['target'])}): AUROC {m['auroc_before']:.3f} -> {m['auroc_after']:.3f}, "
        f"precision@20 {m['precision_at_20_before']:.2f} -> {m['precision_at_20_after']:.2f}",
        highlight=False,
    )


@app.command()
def similar(
    image: Annotated[str, typer.Argument(help="An image file, or a stored record as #ID.")],
    model: Model = "",
    detector: Detector = None,
    k: Annotated[int, typer.Option("--k", min=1, max=200, help="How many look-alikes.")] = 12,
    as_json: AsJson = False,
) -> None:
    """Stored images most like IMAGE (by the model's embedding)."""
    from astroclassify.discovery.collection import similar_images

    predictor = installation().predictor(model, detector=detector)
    query: int | str = int(image[1:]) if image.startswith("#") and image[1:].isdigit() else image
    with installation().open_store() as store:
        result = similar_images(store, query, predictor, k=k)
    if as_json:
        print(json.dumps(result.to_dict()))
        return
    if not result.hits:
        out.print("no stored images to compare with yet: classify or ingest some first", highlight=False)
        return
    from rich.table import Table

    table = Table("#", "record", "file", "label", "anomaly", "distance")
    for rank, hit in enumerate(result.hits, 1):
        score = "" if hit.anomaly_score is None else f"{hit.anomaly_score:.2f}"
        label = f"{hit.corrected} (corrected; model: {hit.label})" if hit.corrected else hit.label
        table.add_row(str(rank), str(hit.id), hit.filename, label, score, f"{hit.distance:.3f}")
    out.print(table)


@anomalies_app.command("mark")
def mark(
    record: Annotated[
        int, typer.Argument(min=1, help="A stored record's id (see the gallery or /api/classifications).")
    ],
    interesting: Annotated[
        bool, typer.Option("--interesting/--boring", help="Your verdict; the anomaly ranking re-learns from it.")
    ],
) -> None:
    """Mark a stored image interesting or not (kept with who and when)."""
    from astroclassify.discovery.collection import mark_image

    with installation().open_store() as store:
        mark_image(store, record, interesting)
    out.print(f"#{record} marked {'interesting' if interesting else 'boring'}")


@anomalies_app.command("export")
def export(out_dir: Annotated[Path, typer.Argument(help="Empty folder for manifest.csv and images/.")]) -> None:
    """Write the marked images as a dataset (label: interesting or boring)."""
    from astroclassify.discovery.collection import export_marks

    with installation().open_store() as store:
        n = export_marks(store, out_dir)
    out.print(f"{n} marked image(s) written to {out_dir}")
