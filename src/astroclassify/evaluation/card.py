"""Re-score a model folder's held-out test split and rewrite its metrics, plots and model card.

Training writes all of these once; this brings a model folder up to what the current
release reports (95% intervals, plots that read on light and dark pages) without retraining:
the same ONNX model scores the same test rows, so the point figures must not move.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from astroclassify.errors import ModelError
from astroclassify.evaluation.evaluate import evaluate
from astroclassify.evaluation.report import write_eval_plots, write_model_card, write_training_plot
from astroclassify.inference.predictor import OnnxPredictor
from astroclassify.modelfolder.folder import load_bundle
from astroclassify.preparation.prepare import Progress

__all__ = ["refresh_model_card"]

log = logging.getLogger(__name__)

RUN_FIELDS = ("failed", "manifest_problems", "excluded_seen_in_training", "unknown_labels", "data", "split", "model")


def refresh_model_card(
    model: str | Path,
    *,
    limits: list[str] | None = None,
    models_dir: Path | None = None,
    progress: Progress | None = None,
) -> Path:
    """Re-score ``model``'s test split (all its training datasets together, then each) and rewrite its card.

    Parameters
    ----------
    model : str or Path
        A user model's name or a model folder (bundled models are read-only).
    limits : list of str, optional
        Replaces the lines of the card's Limits section (kept in ``model.json``).
    models_dir : Path, optional
        Folder of user models.
    progress : callable, optional
        Called as images are scored.

    Returns
    -------
    Path
        ``MODEL_CARD.md``.

    Raises
    ------
    ModelError
        When the folder has no ``splits.csv`` (nothing says which images are held out), or a
        point figure changes (the stored metrics and the card would disagree).
    """
    bundle = load_bundle(model, models_dir=models_dir)
    if not (bundle.path / "splits.csv").is_file():
        raise ModelError(f"{bundle.path}: no splits.csv, so its test split is unknown; re-train it to get a card")
    sources = list(bundle.meta.get("training", {}).get("config", {}).get("data", []))
    predictor = OnnxPredictor(bundle)
    scopes = {"all": sources} | ({s: [s] for s in sources} if len(sources) > 1 else {})
    before = bundle.meta.get("metrics", {}).get("test", {})
    test = {}
    for scope, data in scopes.items():
        result = evaluate(predictor, data, split="test", progress=progress)
        metrics = {k: v for k, v in result.metrics.items() if k not in RUN_FIELDS}
        old = before.get(scope)
        if old and (old["n"], old["accuracy"], old["macro_f1"]) != (
            metrics["n"],
            metrics["accuracy"],
            metrics["macro_f1"],
        ):
            raise ModelError(
                f"{bundle.name}: re-scoring {scope} gave n={metrics['n']} accuracy {metrics['accuracy']} macro-F1 "
                f"{metrics['macro_f1']}, not the stored n={old['n']} {old['accuracy']} {old['macro_f1']}; not rewritten"
            )
        test[scope] = metrics
        if scope == "all":
            labels = metrics["confusion_matrix"]["labels"]
            y = np.array([labels.index(t) for t in result.y_true])
            write_eval_plots(metrics, result.probs, y, result.logits, bundle.path, title=f"{bundle.name}: test split")
    bundle.meta.setdefault("metrics", {})["test"] = test
    if limits:
        bundle.meta["limits"] = list(limits)
    bundle.save()
    history = bundle.path / "history.json"
    if history.is_file():
        write_training_plot(json.loads(history.read_text()), bundle.path / "history.png")
    return write_model_card(load_bundle(bundle.path))
