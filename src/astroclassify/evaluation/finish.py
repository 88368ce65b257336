"""Finishing a model version, in one place: calibrate on validation, score the held-out test split
through ONNX, draw the plots, write the card.

Training, ensembles, INT8 copies and card rewrites each produce a graph (and its
``model.json``) in a draft version (``versions.draft``) and call these, so every version's
metrics, plots and card are made the same way from the same ONNX path users run.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from astroclassify.config import BUNDLED_ONLY, Folders
from astroclassify.errors import ModelError
from astroclassify.evaluation.calibration import fit_temperature
from astroclassify.evaluation.card import write_model_card
from astroclassify.evaluation.report import write_eval_plots, write_training_plot
from astroclassify.modelfolder.folder import Bundle, load_bundle, model_home
from astroclassify.modelfolder.versions import draft

if TYPE_CHECKING:
    from astroclassify.evaluation.evaluate import Evaluation
    from astroclassify.inference.predictor import OnnxPredictor
    from astroclassify.progress import Progress

__all__ = ["Scored", "fit_temperatures", "finish", "refresh_model_card", "score_split"]

# What an evaluation reports about its run rather than about the model: not kept in model.json.
RUN_FIELDS = ("failed", "manifest_problems", "excluded_seen_in_training", "unknown_labels", "data", "split", "model")


@dataclass(frozen=True)
class Scored:
    """One held-out split scored through the graph: its metrics, probabilities, true classes and logits."""

    metrics: dict
    probs: np.ndarray
    y: np.ndarray
    logits: np.ndarray | None = None

    @classmethod
    def of(cls, result: Evaluation) -> Scored:
        labels = result.metrics["confusion_matrix"]["labels"]
        y = np.array([labels.index(t) for t in result.y_true], dtype=int)
        metrics = {k: v for k, v in result.metrics.items() if k not in RUN_FIELDS}
        return cls(metrics, result.probs, y, result.logits)


def fit_temperatures(bundle: Bundle, val_logits: Mapping[str, np.ndarray], y_val: np.ndarray) -> Bundle:
    """One temperature per test-time augmentation mode, fitted on validation logits (never on test).

    Averaging fewer views gives sharper logits, so a server that uses another mode than the
    model's default (``serve --tta none``) gets that mode's own temperature.
    """
    temperatures = {mode: float(fit_temperature(logits, y_val)) for mode, logits in val_logits.items()}
    default = temperatures.get(bundle.tta, bundle.temperature)
    meta = bundle.meta | {"temperatures": temperatures, "temperature_fitted_on": "val"}
    return dataclasses.replace(bundle, temperature=default, meta=meta)


def score_split(
    model: OnnxPredictor | Bundle | Path,
    sources: Sequence[str | Path],
    *,
    split: str = "test",
    by_source: bool = False,
    data_dir: Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Scored]:
    """``model`` scored on ``split`` of its data: ``all`` together and, with ``by_source``, each source alone."""
    from astroclassify.evaluation.evaluate import evaluate

    scopes: dict[str, list] = {"all": list(sources)}
    if by_source and len(sources) > 1:
        scopes |= {str(s): [s] for s in sources}
    return {
        scope: Scored.of(evaluate(model, data, split=split, folders=Folders(data_dir=data_dir), progress=progress))
        for scope, data in scopes.items()
    }


def finish(bundle: Bundle, test: Mapping[str, Scored], *, metrics: dict | None = None, card: bool = True) -> Bundle:
    """Keep the test scores in ``model.json``, draw the test plots and the training curve, write the card.

    ``metrics``: further entries of ``model.json``'s ``metrics`` (training adds its
    validation scores); the test scopes replace what the folder held. ``card=False``: the
    caller adds more to the model first and writes the card once itself.
    """
    kept = dict(bundle.meta.get("metrics") or {}) | (metrics or {})
    kept["test"] = {scope: s.metrics for scope, s in test.items()}
    bundle = dataclasses.replace(bundle, meta=bundle.meta | {"metrics": kept})
    bundle.save()
    if "all" in test:
        s = test["all"]
        write_eval_plots(s.metrics, s.probs, s.y, s.logits, bundle.path, title=f"{bundle.name}: test split")
    history = bundle.path / "history.json"
    if history.is_file():
        write_training_plot(json.loads(history.read_text()), bundle.path / "history.png")
    if card:
        write_model_card(bundle)
    return bundle


def refresh_model_card(
    model: str | Path,
    *,
    limits: list[str] | None = None,
    folders: Folders = BUNDLED_ONLY,
    progress: Progress | None = None,
) -> Path:
    """A new version of ``model`` with its test split re-scored (all sources, then each) and its card rewritten.

    The same ONNX graph scores the same held-out rows, so the point figures must not move;
    the intervals, plots and card come up to what the current release reports.

    Parameters
    ----------
    model : str or Path
        A model name (a bundled one gets a user version of its own) or a model folder.
    limits : list of str, optional
        Replaces the lines of the card's Limits section (kept in ``model.json``).

    Returns
    -------
    Path
        The new version's ``MODEL_CARD.md``.

    Raises
    ------
    ModelError
        When the model has no ``splits.csv`` (nothing says which images are held out), or a
        point figure changes (the stored metrics and the card would disagree).
    """
    source = load_bundle(model, models_dir=folders.models_dir)
    if not (source.path / "splits.csv").is_file():
        raise ModelError(f"{source.path}: no splits.csv, so its test split is unknown; re-train it to get a card")
    home, bundled = model_home(model, models_dir=folders.models_dir)
    sources = list(source.meta.get("training", {}).get("config", {}).get("data", []))
    with draft(home, made_by="card", from_current=True, bundled=bundled) as d:
        bundle = dataclasses.replace(load_bundle(d.path), name=source.name)
        test = score_split(bundle, sources, by_source=True, data_dir=folders.data_dir, progress=progress)
        before = bundle.meta.get("metrics", {}).get("test", {})
        for scope, s in test.items():
            old, new = before.get(scope), s.metrics
            if old and (old["n"], old["accuracy"], old["macro_f1"]) != (new["n"], new["accuracy"], new["macro_f1"]):
                raise ModelError(
                    f"{bundle.name}: re-scoring {scope} gave n={new['n']} accuracy {new['accuracy']} macro-F1 "
                    f"{new['macro_f1']}, not the stored n={old['n']} {old['accuracy']} {old['macro_f1']}; not rewritten"
                )
        if limits:
            bundle = dataclasses.replace(bundle, meta=bundle.meta | {"limits": list(limits)})
        finish(bundle, test)
    return d.published / "MODEL_CARD.md"
