"""``astroclassify batch`` (a collection on Dask, Parquet out) and ``export`` (INT8 models): scale and edge."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["register"]

out = Console()
err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command()(batch)
    app.command()(export)


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
    partition_size: Annotated[int, typer.Option(min=1, max=100_000, help="Files per task and per output file.")] = 512,
) -> None:
    """Classify many images on Dask (local or a cluster): one Parquet file per partition, resumable."""
    from astroclassify.cli import _Bars, _settings
    from astroclassify.pipeline.batch import batch as run_batch

    settings = _settings()
    with _Bars() as bars:
        result = run_batch(
            inputs,
            out_dir,
            model=model or settings.default_model,
            scheduler=scheduler,
            workers=workers,
            threads_per_worker=threads,
            embeddings=embeddings,
            tta=tta,
            detector=detector,
            partition_size=partition_size,
            models_dir=settings.models_dir,
            max_pixels=settings.max_image_pixels,
            max_bytes=settings.max_file_bytes,
            progress=bars,
        )
    for line in result.first_errors:
        err.print(f"error: {line}", markup=False, highlight=False)
    skipped = f"; {result.skipped_partitions} partition(s) already written" if result.skipped_partitions else ""
    out.print(
        f"{result.images} images in {result.partitions} partition(s) -> {result.out}: {result.errors} error(s); "
        f"{result.images_per_second:.1f} images/s on {result.workers} worker(s){skipped}",
        highlight=False,
    )
    if result.errors:
        raise typer.Exit(1)


def export(
    model: Annotated[str, typer.Argument(help="Model name or folder.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="The new model folder.")],
    int8: Annotated[
        bool, typer.Option("--int8", help="Quantize to INT8 (static, calibrated on training images).")
    ] = False,
    calibration_images: Annotated[int, typer.Option(min=16, max=5000, help="Training images that calibrate.")] = 200,
    name: Annotated[str | None, typer.Option(help="The new model's name (default: NAME-int8).")] = None,
) -> None:
    """Export a model for small machines (--int8), with its accuracy change and speed-up measured."""
    from astroclassify.cli import _Bars, _settings
    from astroclassify.errors import ConfigError
    from astroclassify.training.quantize import quantize_model

    if not int8:
        raise ConfigError("choose a format: --int8 (the only one so far)")
    settings = _settings()
    with _Bars() as bars:
        result = quantize_model(
            model,
            out_dir,
            calibration_images=calibration_images,
            name=name,
            models_dir=settings.models_dir,
            data_dir=settings.data_dir,
            progress=bars,
        )
    f, q = result.fp32, result.int8
    out.print(
        f"INT8 model written to {result.path}: accuracy {f['accuracy']:.3f} -> {q['accuracy']:.3f}, "
        f"macro-F1 {f['macro_f1']:.3f} -> {q['macro_f1']:.3f} on {q['n']} held-out images; "
        f"{f['images_per_second']:.0f} -> {q['images_per_second']:.0f} images/s ({result.speedup:.2f}x)",
        highlight=False,
    )
