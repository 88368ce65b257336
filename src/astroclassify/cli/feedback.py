"""``feedback``: corrections submitted in the web app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from astroclassify.cli.app import app
from astroclassify.cli.console import installation, out

feedback_app = typer.Typer(no_args_is_help=True, help="Work with corrections submitted in the web app.")
app.add_typer(feedback_app, name="feedback")


@feedback_app.command("export")
def feedback_export(out_dir: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to create.")]) -> None:
    """Write corrected images as a dataset folder (manifest.csv + images/), ready for `train`."""
    from astroclassify.store.export import export_feedback

    with installation().open_store() as store:
        n = export_feedback(store, out_dir)
    out.print(f"{n} corrected image(s) written to {out_dir}")
