"""``train``: a model from datasets, or its cross-validation."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from astroclassify.cli.app import app
from astroclassify.cli.console import Bars, error, installation, out, setup_logging


@app.command()
def train(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Model folder to write.")],
    data: Annotated[
        list[str] | None,
        typer.Option("--data", "-d", help="Dataset folder or collection name (repeatable; labels merge by name)."),
    ] = None,
    recipe: Annotated[
        Path | None, typer.Option(help="A YAML recipe of training options (recipes/); options given here win.")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Architecture (see `astroclassify models`; default efficientnet_lite0)."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(min=1)] = None,
    image_size: Annotated[
        int | None, typer.Option(help="Input side in pixels, 16 to 1024 (0: the architecture's own).")
    ] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    name: Annotated[str | None, typer.Option(help="Model name shown to users.")] = None,
    taxonomy: Annotated[
        str | None,
        typer.Option(help="Label mapping: a built-in name (see `astroclassify taxonomies`) or a YAML file."),
    ] = None,
    cv: Annotated[int, typer.Option(help="Run K-fold grouped cross-validation instead (writes cv.json).")] = 0,
    fresh: Annotated[bool, typer.Option(help="Ignore an existing checkpoint instead of resuming.")] = False,
    option: Annotated[
        list[str] | None, typer.Option("--set", help="Any training option as key=value (repeatable).")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose/--quiet")] = True,
) -> None:
    """Train a model; resumes from OUT/checkpoint.pt when one exists."""
    _start_training(verbose)
    import dataclasses

    from astroclassify.training.config import TrainConfig, apply_overrides, load_recipe

    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "data": tuple(data or ()) or None,
            "model": model,
            "epochs": epochs,
            "image_size": image_size,
            "seed": seed,
            "name": name,
            "taxonomy": taxonomy,
        }.items()
        if v is not None
    }
    command = "astroclassify " + shlex.join(sys.argv[1:])
    data_dir = installation().data_dir
    cfg = dataclasses.replace(
        load_recipe(recipe) if recipe else TrainConfig(),
        out=str(out_dir),
        data_dir=str(data_dir or ""),
        extra={"command": command},
        **overrides,
    )
    cfg = apply_overrides(cfg, option or [])
    from astroclassify.training.crossval import cross_validate
    from astroclassify.training.train import train as run_training

    if cv:
        with Bars() as bars:
            result = cross_validate(dataclasses.replace(cfg, folds=cv), out_dir, progress=bars)
        s = result.summary
        out.print(
            f"{len(s['folds'])}-fold grouped CV: accuracy {s['accuracy_mean']:.3f} ± {s['accuracy_std']:.3f}, "
            f"macro-F1 {s['macro_f1_mean']:.3f} ± {s['macro_f1_std']:.3f}; "
            f"{len(s['suspected_label_errors'])} suspected label error{'' if len(s['suspected_label_errors']) == 1 else 's'}; written to {result.path}"
        )
        return
    with Bars() as bars:
        trained = run_training(cfg, progress=bars, resume=not fresh)
    for scope, m in trained.test_metrics.items():
        out.print(
            f"test \\[{scope}]: n={m['n']} accuracy {m['accuracy']:.3f} macro-F1 {m['macro_f1']:.3f} ECE {m['ece']:.3f}"
        )
    out.print(f"model written to {trained.path} ({trained.bundle.meta['training']['seconds']} s)")
    for line in trained.skipped:
        error(f"skipped {line}")
    if trained.skipped:
        raise typer.Exit(1)  # the model was written from the valid images; the exit code flags the rest


@app.command("train-encoder")
def train_encoder(
    recipe: Annotated[Path, typer.Argument(help="YAML recipe naming the heads (see recipes/encoder.yaml).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Folder for the checkpoint and one model per head.")],
    epochs: Annotated[int | None, typer.Option(min=1)] = None,
    fresh: Annotated[bool, typer.Option(help="Ignore an existing checkpoint instead of resuming.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose/--quiet")] = True,
) -> None:
    """Train one shared encoder with a head per model; writes OUT/<head> for each (resumable)."""
    _start_training(verbose)
    from astroclassify.training.multitask import load_encoder_recipe
    from astroclassify.training.multitask import train_encoder as run

    overrides: dict[str, Any] = {"out": str(out_dir), "data_dir": str(installation().data_dir or "")}
    if epochs is not None:
        overrides["epochs"] = epochs
    cfg = load_encoder_recipe(recipe, extra={"command": "astroclassify " + shlex.join(sys.argv[1:])}, **overrides)
    with Bars() as bars:
        result = run(cfg, progress=bars, resume=not fresh)
    scores = result.test_scores()
    for head, path in result.heads.items():
        m = scores[head]
        score = f"test accuracy {m['accuracy']:.3f} macro-F1 {m['macro_f1']:.3f}" if m else "no test split"
        out.print(f"{head}: {score}; written to {path}")
    out.print(f"{result.seconds:.0f} s")


@app.command()
def learn(
    model: Annotated[str, typer.Argument(help="The champion: a model name or a model home folder.")],
    imported: Annotated[
        list[Path] | None,
        typer.Option("--import", help="A labelled dataset folder from elsewhere to learn from (repeatable)."),
    ] = None,
    max_minutes: Annotated[
        float, typer.Option(min=0, help="Training budget; an unfinished challenger resumes next time. 0: none.")
    ] = 0.0,
    epochs: Annotated[int | None, typer.Option(min=1, help="Override the champion's epoch count.")] = None,
    kind: Annotated[
        str,
        typer.Option(
            help="The challenger: head (the champion's encoder, its last layer refitted: about a minute), "
            "full (fine-tune the whole network), auto (head when --max-minutes is shorter than the champion's training)."
        ),
    ] = "auto",
    clean: Annotated[bool, typer.Option(help="Keep suspected label errors out of training.")] = True,
    dry_run: Annotated[bool, typer.Option(help="Say what a turn would do; train and change nothing.")] = False,
    history: Annotated[bool, typer.Option(help="Print the decisions recorded so far, then stop.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose/--quiet")] = True,
) -> None:
    """Learn from corrections, archive categories and imported labels: train a challenger, promote it only if better on the gold set."""
    import json

    from astroclassify.learning.loop import learn as run_learn
    from astroclassify.learning.loop import learn_history
    from astroclassify.modelfolder.folder import model_home

    inst = installation()
    if history:
        home, _ = model_home(model, models_dir=inst.models_dir)
        for d in learn_history(home):
            if json_out:  # JSON lines: one decision each
                sys.stdout.write(json.dumps(d) + "\n")
                continue
            made = f" [{d['challenger_kind']} challenger]" if d.get("challenger_kind") else ""
            out.print(
                f"{d['at']}  {d['decision']:<15} {d['message']}{made}", markup=False, highlight=False, soft_wrap=True
            )
            for line in _comparison_lines(d.get("comparison")):
                out.print(f"    {line}", markup=False, highlight=False, soft_wrap=True)
        return
    if not dry_run:
        _start_training(verbose)
    with inst.open_store() as store, Bars() as bars:
        result = run_learn(
            model,
            store=store,
            imported=imported or (),
            max_minutes=max_minutes,
            epochs=epochs or 0,
            kind=kind,
            dry_run=dry_run,
            clean=clean,
            notifiers=inst.notifiers(),
            progress=bars,
            folders=inst.folders(),
        )
    if json_out:
        out.print_json(json.dumps(result.to_dict()))
        return
    out.print(f"{result.decision}: {result.message}", markup=False, highlight=False)
    for line in _comparison_lines(result.comparison.to_dict() if result.comparison else None):
        out.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    for s in result.suspects[:20]:
        out.print(
            f"  suspect: {s.row.source} labelled {s.row.label}, looks like {s.predicted} (p(label) {s.p_label:.2f})",
            markup=False,
            highlight=False,
        )


def _comparison_lines(c: dict | None) -> list[str]:
    """The figures behind a verdict: macro-F1 on gold with the paired interval, and each class's recall."""
    if not c:
        return []
    lo, hi = c["difference_ci"]
    lines = [
        f"gold set ({c['n']} images): macro-F1 {c['champion_macro_f1']:.3f} -> {c['challenger_macro_f1']:.3f}, "
        f"difference {c['difference']:+.3f} [{lo:+.3f}, {hi:+.3f}]"
    ]
    for label, r in c.get("recall", {}).items():
        a, b = r["difference_ci"]
        lines.append(f"recall {label}: {r['champion']:.2f} -> {r['challenger']:.2f} (difference [{a:+.2f}, {b:+.2f}])")
    return lines


def _start_training(verbose: bool) -> None:
    """Restart once with tcmalloc preloaded (faster torch on CPU), then set up logging."""
    from astroclassify.config import tcmalloc_env

    env = tcmalloc_env()
    if env is not None:
        os.execve(sys.executable, [sys.executable, "-m", "astroclassify.cli", *sys.argv[1:]], env)
    setup_logging(verbose)
