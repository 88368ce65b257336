"""``sync`` and ``labels``: labels shared between installations, aggregated and exchanged."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from astroclassify.cli.app import app
from astroclassify.cli.console import installation, out

labels_app = typer.Typer(no_args_is_help=True, help="Votes from every contributor: aggregate, export, import.")
app.add_typer(labels_app, name="labels")


@app.command()
def sync(
    peer: Annotated[str, typer.Option("--peer", help="The other installation's URL (http://host:8000).")],
    key: Annotated[str, typer.Option("--key", envvar="ASTROCLASSIFY_PEER_KEY", help="An API key it issued to us.")],
    timeout: Annotated[float, typer.Option(min=1, help="Seconds each request may take.")] = 30.0,
    max_minutes: Annotated[float, typer.Option(min=0.05, help="The whole sync's time; the next one goes on.")] = 15.0,
    max_mb: Annotated[int, typer.Option(min=1, help="The whole sync's downloads, in MB; the next one goes on.")] = 2048,
    peer_max_mb: Annotated[
        float, typer.Option(min=0.001, help="Images this peer may keep here over all its syncs, in MB.")
    ] = 4096.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Pull another installation's labels since the last sync (resumable; each label arrives once)."""
    from astroclassify.sharing.sync import MAX_PEER_ITEMS, PEER_FULL
    from astroclassify.sharing.sync import sync as run_sync

    s = installation().settings
    with installation().open_store() as store:
        result = run_sync(
            store,
            peer,
            key,
            timeout=timeout,
            max_seconds=max_minutes * 60,
            max_total_bytes=max_mb * 1024 * 1024,
            max_peer_bytes=int(peer_max_mb * 1024**2),
            limits=s.decode_limits,
        )
    if json_out:
        out.print_json(json.dumps(result.to_dict()))
        return
    out.print(
        f"{result.received} label(s) received, {result.repeats} already here, {result.images} image(s) fetched "
        f"from {result.peer} (cursor {result.cursor})",
        markup=False,
        highlight=False,
    )
    for reason, n in result.refused.items():
        out.print(f"  refused {n}: {reason}", markup=False, highlight=False)
    if result.stopped == PEER_FULL:
        out.print(
            f"  stopped: this peer has used its share of our storage ({peer_max_mb:g} MB of images or "
            f"{MAX_PEER_ITEMS:,} labels); raise --peer-max-mb to take more from it",
            markup=False,
            highlight=False,
        )
    elif result.stopped:
        out.print(f"  stopped at the {result.stopped}; run sync again to go on", markup=False, highlight=False)


@labels_app.command("votes")
def labels_votes(
    disputed: Annotated[bool, typer.Option(help="Only images whose contributors disagree.")] = False,
    model: Annotated[
        str | None, typer.Option(help="Weigh contributors by their accuracy on this model's gold set.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON lines, one image each.")] = False,
) -> None:
    """Votes per image from every contributor: counts, skill-weighted fractions, consensus and agreement."""
    from astroclassify.learning.promotion import gold_labels
    from astroclassify.modelfolder.folder import model_home
    from astroclassify.sharing.votes import aggregate_votes

    gold = gold_labels(model_home(model, models_dir=installation().models_dir)[0]) if model else {}
    with installation().open_store() as store:
        rows = [r for r in aggregate_votes(store, gold=gold) if r.disputed or not disputed]
    if json_out:
        for r in rows:  # JSON lines: one image per line
            sys.stdout.write(json.dumps(r.__dict__) + "\n")
        return
    if not rows:
        out.print("no disputed images" if disputed else "no votes yet", highlight=False)
        return
    t = Table("stored file", "people", "votes", "fractions", "consensus", "agreement", "credit", box=None)
    for r in rows:
        t.add_row(
            r.stored_name,
            str(r.contributors),
            ", ".join(f"{a} {n}" for a, n in r.counts.items()),
            ", ".join(f"{a} {f:.2f}" for a, f in r.fractions.items()),
            (r.consensus or "none (no answer has over half)") + (" (gold)" if r.gold else ""),
            f"{r.agreement:.2f}",
            "; ".join(r.credits + r.licences)[:80],
        )
    out.print(t)


@labels_app.command("export")
def labels_export(out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder to create.")]) -> None:
    """Write every voted image as Galaxy Zoo style Parquet (labels.parquet) with its images and a manifest."""
    from astroclassify.sharing.exchange import export_collection

    with installation().open_store() as store:
        result = export_collection(store, out_dir)
    out.print(f"{result.images} image(s), {result.votes} vote(s) written to {out_dir}", markup=False, highlight=False)


@labels_app.command("import")
def labels_import(
    folder: Annotated[Path, typer.Argument(help="A folder with labels.parquet (Galaxy Zoo layout) and its images.")],
    name: Annotated[str | None, typer.Option(help="Name the votes' origin (default: the folder's name).")] = None,
) -> None:
    """Read a Galaxy Zoo style collection's votes (idempotent: importing again adds none)."""
    from astroclassify.sharing.exchange import import_collection

    s = installation().settings
    with installation().open_store() as store:
        result = import_collection(store, folder, name=name, limits=s.decode_limits)
    out.print(f"{result.votes} new vote(s) on {result.images} image(s) from {folder}", markup=False, highlight=False)
    for reason, n in result.refused.items():
        out.print(f"  refused {n}: {reason}", markup=False, highlight=False)
    if result.refused:
        raise typer.Exit(1)
