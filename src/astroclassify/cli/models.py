"""``models``, ``card``, ``ensemble`` and ``taxonomies``: what models there are and how they are described."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from astroclassify.cli.app import app
from astroclassify.cli.console import Bars, installation, out


@app.command()
def models() -> None:
    """List bundled and user models, and the trainable architectures."""
    from astroclassify.modelfolder.folder import available_models, load_bundle

    t = Table("model", "where", "classes", "test accuracy", box=None)
    for entry in available_models(installation().models_dir):
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

    with Bars() as bars:
        path = refresh_model_card(model, limits=limit, models_dir=installation().models_dir, progress=bars)
    out.print(f"model card rewritten: {path}")


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
    with Bars() as bars:
        result = build_ensemble(
            models, out_dir, name=name, tta=tta, command=command, models_dir=installation().models_dir, progress=bars
        )
    table = Table("model", "n", "accuracy", "macro-F1", "ECE")
    for label, e in result.scores.items():
        m = e.metrics
        table.add_row(label, str(m["n"]), f"{m['accuracy']:.3f}", f"{m['macro_f1']:.3f}", f"{m['ece']:.3f}")
    out.print(table)
    sources = ", ".join(result.bundle.meta["training"]["config"]["data"])
    out.print(f"ensemble written to {out_dir} (test split of {sources}, never trained on by any member)")


@app.command()
def taxonomies() -> None:
    """List the built-in label taxonomies (use a YAML file path for your own)."""
    from astroclassify.preparation.taxonomy import builtin_taxonomies, load_taxonomy

    table = Table(box=None)
    for column in ("name", "classes", "mirror", "description"):
        table.add_column(column, overflow="fold")
    for name in builtin_taxonomies():
        t = load_taxonomy(name)
        mirror = ", ".join(f"{a}↔{b}" for a, b in t.mirror.items() if a < b)
        table.add_row(name, ", ".join(t.labels), mirror, t.description)
    out.print(table)
