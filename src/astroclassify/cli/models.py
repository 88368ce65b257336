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

models_app = typer.Typer(
    invoke_without_command=True, help="List models and their versions; choose the version served, or roll back."
)
app.add_typer(models_app, name="models")


@models_app.callback()
def models(ctx: typer.Context) -> None:
    """List bundled and user models with their versions (* served), and the trainable architectures."""
    if ctx.invoked_subcommand is not None:
        return
    from astroclassify.modelfolder.folder import available_models, broken_models, load_bundle, model_versions

    models_dir = installation().models_dir
    t = Table("model", "version", "made by", "created", "classes", "test accuracy", "where", box=None)
    for entry in available_models(models_dir):
        for v in model_versions(entry.name, models_dir=models_dir):
            b = load_bundle(v.path)
            acc = b.meta.get("metrics", {}).get("test", {}).get("all", {}).get("accuracy")
            where = "bundled" if v.made_by == "bundled" else str(v.path)
            t.add_row(
                entry.name,
                ("* " if v.current else "  ") + v.version,
                v.made_by,
                v.created[:16].replace("T", " "),
                ", ".join(b.labels),
                f"{acc:.3f}" if acc is not None else "-",
                where,
            )
    for name, why in broken_models(models_dir).items():
        t.add_row(name, "  -", "", "", "", "-", f"broken, not served: {why}")
    out.print(t)
    try:
        from astroclassify.models import list_models

        out.print("architectures: " + ", ".join(list_models()))
    except ImportError:
        out.print("architectures: install the 'train' extra (torch) to train models")


@models_app.command("use")
def models_use(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION (a unique prefix of the version will do).")],
) -> None:
    """Serve another version of a model; running servers pick it up on their next request."""
    from astroclassify.modelfolder.folder import use_model_version

    v = use_model_version(ref, models_dir=installation().models_dir)
    out.print(f"{v.name} now serves version {v.version} ({v.made_by}, {v.path})", highlight=False)


@models_app.command("rollback")
def models_rollback(name: Annotated[str, typer.Argument(help="Model name or home folder.")]) -> None:
    """Serve the version served before the current one (undo the last `use` or promotion)."""
    from astroclassify.modelfolder.folder import rollback_model

    v = rollback_model(name, models_dir=installation().models_dir)
    out.print(f"{v.name} rolled back to version {v.version} ({v.made_by}, {v.path})", highlight=False)


@app.command()
def card(
    model: Annotated[str, typer.Argument(help="Model folder (or bundled name, in a source checkout).")],
    limit: Annotated[
        list[str] | None,
        typer.Option("--limit", help="A line for the card's Limits section (repeatable; replaces them)."),
    ] = None,
) -> None:
    """Re-score a model's held-out test split and rewrite its metrics (with 95% intervals), plots and MODEL_CARD.md."""
    from astroclassify.evaluation.finish import refresh_model_card

    with Bars() as bars:
        inst = installation()
        path = refresh_model_card(model, limits=limit, folders=inst.folders(), progress=bars)
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
    from astroclassify.training.ensemble import build_ensemble

    inst = installation()
    command = "astroclassify " + shlex.join(sys.argv[1:])
    with Bars() as bars:
        result = build_ensemble(
            models,
            out_dir,
            name=name,
            tta=tta,
            command=command,
            folders=inst.folders(),
            progress=bars,
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
