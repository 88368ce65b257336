"""``data``: check, fetch and split datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from astroclassify.cli.app import app
from astroclassify.cli.console import Bars, error, installation, out

data_app = typer.Typer(no_args_is_help=True, help="Check, fetch and split datasets.")
app.add_typer(data_app, name="data")


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
    with Bars(enabled=not as_json) as bars:
        report = datasets.check(folder, labels=allowed, decode=decode, data_dir=installation().data_dir, progress=bars)
    ds = report.dataset
    if as_json:
        summary = {"ok": report.ok, "n": len(ds.samples), "classes": ds.class_counts(), "tags": ds.tag_names}
        print(json.dumps(summary | {"errors": report.errors, "warnings": report.warnings}))
    else:
        t = Table("label", "images", box=None)
        for label, n in ds.class_counts().items():
            t.add_row(label, str(n))
        out.print(f"[bold]{ds.root}[/]: {len(ds.samples)} images")
        out.print(t)
        if ds.tag_names:
            out.print(f"soft labels: {', '.join(ds.tag_names)}", highlight=False)
        for w in report.warnings:
            out.print(f"warning: {w}", markup=False, highlight=False)
        for e in report.errors:
            error(e)
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

    with Bars() as bars:
        n = datasets.fetch(source, out_dir, data_dir=installation().data_dir, progress=bars("verifying", 0))
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

    with Bars() as bars:
        result = datasets.split(
            data, out_file, seed=seed, test_frac=test_frac, val_frac=val_frac, folds=folds,
            image_size=image_size, data_dir=installation().data_dir, progress=bars,
        )  # fmt: skip
    out.print(
        f"{out_file}: {result.counts}, {result.groups} groups, {result.near_duplicate_pairs} near-duplicate pairs, "
        f"{result.label_conflicts} label conflicts"
    )
