"""``export``: a model for small machines (INT8), its accuracy change and speed-up measured."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from astroclassify.cli.app import app
from astroclassify.cli.console import Bars, installation, out

__all__ = ["export"]


@app.command()
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
    from astroclassify.errors import ConfigError
    from astroclassify.training.quantize import quantize_model

    if not int8:
        raise ConfigError("choose a format: --int8 (the only one so far)")
    with Bars() as bars:
        result = quantize_model(
            model,
            out_dir,
            calibration_images=calibration_images,
            name=name,
            folders=installation().folders(),
            progress=bars,
        )
    f, q = result.fp32, result.int8
    out.print(
        f"INT8 model written to {result.path}: accuracy {f['accuracy']:.3f} -> {q['accuracy']:.3f}, "
        f"macro-F1 {f['macro_f1']:.3f} -> {q['macro_f1']:.3f} on {q['n']} held-out images; "
        f"{f['images_per_second']:.0f} -> {q['images_per_second']:.0f} images/s ({result.speedup:.2f}x)",
        highlight=False,
    )
