"""Grouped K-fold cross-validation of a recipe: per-fold and pooled scores per TTA mode, and suspected label errors.

Each fold trains with ``training.train.fit_model`` (through the one training loop) for exactly
``cfg.epochs``, so no fold peeks at its held-out part.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from astroclassify.evaluation.calibration import softmax
from astroclassify.evaluation.label_errors import SUSPECT_THRESHOLD, doubted_labels
from astroclassify.evaluation.metrics import classification_metrics
from astroclassify.imaging.tta import TTA_MODES
from astroclassify.models import get_pretrained_cfg
from astroclassify.progress import Progress, silent
from astroclassify.training.config import TrainConfig
from astroclassify.training.loop import class_mirror, network_outputs
from astroclassify.training.train import fit_model, prepare

__all__ = ["CVResult", "cross_validate"]

log = logging.getLogger(__name__)


@dataclass
class CVResult:
    """Grouped K-fold cross-validation: per-fold and pooled out-of-fold scores, suspected label errors."""

    summary: dict  # what cv.json holds
    path: Path | None  # cv.json, when written

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"CVResult({len(s['folds'])} folds: accuracy {s['accuracy_mean']:.3f} ± {s['accuracy_std']:.3f}, "
            f"macro-F1 {s['macro_f1_mean']:.3f} ± {s['macro_f1_std']:.3f}; "
            f"{len(s['suspected_label_errors'])} suspected label error{'' if len(s['suspected_label_errors']) == 1 else 's'})"
        )


def cross_validate(cfg: TrainConfig, out: str | Path | None = None, progress: Progress = silent) -> CVResult:
    """K-fold grouped CV on the non-test part; writes ``out/cv.json`` and, beside a model, its card.

    Each fold trains for exactly ``cfg.epochs`` (no early stopping, so no fold peeks at
    its held-out part). Held-out folds are scored under every TTA mode, so the mode can be
    chosen by CV.

    Parameters
    ----------
    cfg : TrainConfig
        The recipe (data, model, epochs, seed, split fractions, ``folds``).
    out : str or Path, optional
        Where ``cv.json`` goes; default: ``cfg.out``. Where it holds a trained model, its
        model card is rewritten with the CV section.
    progress : callable, optional
        Called with each epoch's progress (the CLI draws bars with it).

    Returns
    -------
    CVResult
        ``summary`` (what ``cv.json`` holds: per-fold and pooled scores, per-TTA-mode scores,
        suspected label errors) and ``path``.
    """
    summary = _cross_validate(cfg, progress)
    folder = Path(out if out is not None else cfg.out) if (out is not None or cfg.out) else None
    path = None
    if folder is not None:
        from astroclassify.evaluation.card import write_model_card
        from astroclassify.modelfolder.folder import load_bundle
        from astroclassify.modelfolder.versions import adopt, current_version, draft

        folder.mkdir(parents=True, exist_ok=True)
        adopt(folder)
        text = json.dumps(summary, indent=1) + "\n"
        if current_version(folder) is None:  # no model yet: the scores wait beside where it will be
            path = folder / "cv.json"
            path.write_text(text)
        else:  # the served model's card gets the CV section: a new version
            with draft(folder, made_by="cv", from_current=True) as d:
                (d.path / "cv.json").write_text(text)
                write_model_card(load_bundle(d.path))
            path = d.published / "cv.json"
    return CVResult(summary, path)


def _cross_validate(cfg: TrainConfig, progress: Progress = silent) -> dict:
    data = prepare(cfg, progress)
    pre = get_pretrained_cfg(cfg.model)
    pool = np.flatnonzero(data.split != "test")
    oof = {mode: np.full((len(data.y), len(data.labels)), np.nan) for mode in TTA_MODES}
    folds = []
    mirror = class_mirror(data)
    for f in sorted(set(data.fold[pool].tolist())):
        held = pool[data.fold[pool] == f]
        fit_idx = pool[data.fold[pool] != f]
        model, _, _ = fit_model(cfg, data, fit_idx, None, progress)
        row = {"fold": f, "n": len(held)}
        for mode in TTA_MODES:
            logits, _ = network_outputs(model, data.table.pixels[held], pre.mean, pre.std, mode, mirror=mirror)
            oof[mode][held] = softmax(logits)
            m = classification_metrics([data.labels[i] for i in data.y[held]], oof[mode][held], data.labels)
            row[mode] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
        row |= row[cfg.tta]
        folds.append(row)
        log.info("fold %d: %s", f, row)
    keys = [s.key for s in data.table.samples]
    per_dataset: dict[str, dict[str, dict]] = {}
    for mode in TTA_MODES:
        for ds in sorted({data.table.samples[i].dataset for i in pool}):
            rows = np.array([i for i in pool if data.table.samples[i].dataset == ds])
            m = classification_metrics([data.labels[i] for i in data.y[rows]], oof[mode][rows], data.labels)
            per_dataset.setdefault(mode, {})[ds] = {k: m[k] for k in ("n", "accuracy", "macro_f1", "ece")} | {
                "f1": {label: c["f1"] for label, c in m["per_class"].items() if c["support"]}
            }
    acc = np.array([f["accuracy"] for f in folds])
    f1 = np.array([f["macro_f1"] for f in folds])
    return {
        "command": cfg.extra.get("command", ""),
        "tta": cfg.tta,
        "folds": folds,
        "accuracy_mean": float(acc.mean()),
        "accuracy_std": float(acc.std()),
        "macro_f1_mean": float(f1.mean()),
        "macro_f1_std": float(f1.std()),
        "pooled_out_of_fold": per_dataset,
        "suspect_threshold": SUSPECT_THRESHOLD,
        "suspected_label_errors": [
            {
                "key": keys[d.index],
                "label": data.labels[data.y[d.index]],
                "predicted": data.labels[d.predicted],
                "confidence": d.confidence,
                "p_label": d.p_label,
            }
            for d in doubted_labels(oof[cfg.tta], data.y, pool)
        ],
    }
