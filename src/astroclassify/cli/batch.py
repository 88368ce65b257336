"""``batch``: a collection classified on Dask, Parquet out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from astroclassify.cli.app import app
from astroclassify.cli.console import Bars, err, installation, out

__all__ = ["batch"]


@app.command()
def batch(
    inputs: Annotated[
        list[str], typer.Argument(help="Folders, globs, CSV/Parquet manifests (path or url column) or URLs.")
    ],
    out_dir: Annotated[str, typer.Option("--out", "-o", help="Output folder of Parquet files (re-run to resume).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model name or folder (default: the settings').")] = "",
    scheduler: Annotated[
        str | None, typer.Option(help="Dask distributed scheduler address (default: a local cluster).")
    ] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Local worker processes (default: one per core).")] = None,
    threads: Annotated[int, typer.Option(min=1, help="ONNX Runtime threads per worker.")] = 1,
    embeddings: Annotated[bool, typer.Option("--embeddings", help="Add each image's compact embedding.")] = False,
    tta: Annotated[str | None, typer.Option(help="Test-time augmentation (default: the model's own).")] = None,
    detector: Annotated[Path | None, typer.Option(help="Anomaly detector folder (default: the model's own).")] = None,
    partition_size: Annotated[
        int | None,
        typer.Option(
            min=1, max=100_000, help="Files per task and per output file (default: about 4 per worker, at most 512)."
        ),
    ] = None,
) -> None:
    """Classify many images on Dask (local or a cluster): one Parquet file per partition, resumable."""
    from astroclassify.batching.batch import batch as run_batch

    settings = installation().settings
    with Bars() as bars:
        result = run_batch(
            inputs,
            out_dir,
            model=settings.model_or_default(model),
            scheduler=scheduler,
            workers=workers,
            threads_per_worker=threads,
            embeddings=embeddings,
            tta=tta,
            detector=detector,
            partition_size=partition_size,
            models_dir=settings.models_dir,
            limits=settings.decode_limits,
            progress=bars,
        )
    for line in result.first_errors:
        err.print(f"error: {line}", markup=False, highlight=False)
    out.print(result.summary(), highlight=False)
    if result.errors:
        raise typer.Exit(1)
