"""One model, read top to bottom: data, split, the one loop (``training.loop``), export, evaluation.

``train(cfg)`` writes a complete model folder: model.onnx + model.json (labels, input
size, normalisation, temperature), splits.csv, history.json/.png, checkpoint.pt, the
test-split evaluation and a model card. ``fit_model`` runs the loop on a zoo model;
``training.crossval`` trains one model per fold with it, on the non-test part only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from astroclassify.errors import ConfigError
from astroclassify.evaluation.metrics import with_interval
from astroclassify.imaging.filters import check_filters
from astroclassify.imaging.framing import Framing
from astroclassify.imaging.stretch import FitsDisplay
from astroclassify.modelfolder.folder import Bundle
from astroclassify.models import create_model, get_pretrained_cfg
from astroclassify.preparation.prepare import PreparedData, prepare_data, write_split_file
from astroclassify.progress import Progress, silent
from astroclassify.training.config import TrainConfig
from astroclassify.training.loop import (
    Part,
    TrainingPaused,
    fit,
    load_checkpoint,
    resume_key,
    seed_everything,
)

__all__ = ["TrainResult", "TrainingPaused", "fit_model", "prepare", "train"]

log = logging.getLogger(__name__)


def fit_model(
    cfg: TrainConfig,
    data: PreparedData,
    train_idx: np.ndarray,
    val_idx: np.ndarray | None,
    progress: Progress = silent,
    checkpoint: Path | None = None,
    deadline: float | None = None,
) -> tuple[torch.nn.Module, list[dict], int]:
    """A zoo model for ``data``'s classes through the one loop: (best validation weights, history, best epoch)."""
    seed_everything(cfg.seed)
    pre = get_pretrained_cfg(cfg.model)
    model = create_model(cfg.model, pretrained=cfg.pretrained and pre.weights is not None, num_classes=len(data.labels))
    empty = np.zeros(0, np.int64)
    part = Part(cfg.head(), "classes", data, train_idx, empty if val_idx is None else val_idx)
    return fit(cfg, model, [part], progress, checkpoint, resume_key(cfg), deadline)


@dataclass
class TrainResult:
    """A trained model folder: its bundle, its held-out test metrics, and the inputs it had to skip."""

    path: Path
    bundle: Bundle
    seconds: float
    skipped: list[str]  # manifest rows and files that could not be used, one line each

    @property
    def test_metrics(self) -> dict[str, dict]:
        """Metrics on the test split per scope (``all`` and each dataset), with 95% intervals."""
        return self.bundle.meta.get("metrics", {}).get("test", {})

    def __repr__(self) -> str:
        m, ci = self.test_metrics.get("all", {}), self.test_metrics.get("all", {}).get("ci", {})
        score = f"test accuracy {with_interval(m['accuracy'], ci.get('accuracy'))}" if m else "no test split"
        return f"TrainResult({self.bundle.name} at {self.path}: {score}, {self.seconds:.0f} s)"


def train(cfg: TrainConfig, progress: Progress = silent, *, resume: bool = True, serve: bool = True) -> TrainResult:
    """Train, calibrate, export and evaluate one model into ``cfg.out``; resumes from its checkpoint.

    Parameters
    ----------
    cfg : TrainConfig
        Data, architecture and recipe (``TrainConfig(data=("hubble-dso",), out="runs/dso")``).
    progress : callable, optional
        ``progress(description, total) -> advance(n)``, for progress bars.
    resume : bool
        Continue from ``cfg.out/checkpoint.pt`` when there is one (with the same split);
        ``False`` deletes it and starts again.
    serve : bool
        Serve the new version at once; ``False`` writes it beside the served one (a challenger
        that ``learn`` promotes only if it measures better).

    Raises
    ------
    TrainingPaused
        ``cfg.max_minutes`` ran out before the last epoch; the checkpoint is kept.

    Returns
    -------
    TrainResult
        The model folder (``model.onnx``, ``model.json``, ``splits.csv``, card, plots).
    """
    from astroclassify.modelfolder.folder import load_bundle
    from astroclassify.modelfolder.versions import adopt, draft
    from astroclassify.training.bundle_writer import finish_bundle

    if not cfg.data:  # before any folder is made
        raise ConfigError("no training data: pass --data DIR (a dataset folder or collection name)")
    started = time.perf_counter()
    # The budget counts from here: decoding the images is part of what it pays for.
    deadline = time.monotonic() + 60 * cfg.max_minutes if cfg.max_minutes > 0 else None
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    home = Path(cfg.out)  # the model's home: its versions, and training's working files
    home.mkdir(parents=True, exist_ok=True)
    adopt(home)  # a folder trained before versions existed becomes version one of itself
    if not resume:
        (home / "checkpoint.pt").unlink(missing_ok=True)
    resume_splits = home / "splits.csv"
    if (home / "checkpoint.pt").is_file():
        load_checkpoint(home / "checkpoint.pt")  # a foreign or damaged file: refused before any decoding
        if resume_splits.is_file() and not cfg.splits:
            cfg = dataclasses.replace(cfg, splits=str(resume_splits))  # resuming: keep the same split
    data = prepare(cfg, progress)
    write_split_file(home / "splits.csv", data)
    train_idx = np.flatnonzero(data.split == "train")
    val_idx = np.flatnonzero(data.split == "val")
    log.info("split: %d train, %d val, %d test images", len(train_idx), len(val_idx), int((data.split == "test").sum()))

    model, history, best_epoch = fit_model(
        cfg, data, train_idx, val_idx, progress, checkpoint=home / "checkpoint.pt", deadline=deadline
    )
    seconds = time.perf_counter() - started
    snapshot = hashlib.sha256((home / "splits.csv").read_bytes()).hexdigest()
    info = {
        "config": cfg.recipe(),
        "data": {"sources": list(cfg.data), "splits_sha256": snapshot},
    }
    with draft(home, made_by="train", info=info, serve=serve) as d:
        for kept in ("splits.csv", "cv.json"):  # cross-validation run before training goes on the card
            if (home / kept).is_file():
                shutil.copyfile(home / kept, d.path / kept)
        (d.path / "history.json").write_text(json.dumps(history, indent=1) + "\n")
        name = cfg.name or home.name
        bundle = finish_bundle(cfg, data, model, d.path, name=name, best_epoch=best_epoch, seconds=seconds)
        test = bundle.meta.get("metrics", {}).get("test", {}).get("all", {})
        d.info["scores"] = {k: test[k] for k in ("n", "accuracy", "macro_f1") if k in test}
    skipped = bundle.meta["data"].get("manifest_problems", []) + bundle.meta["data"].get("undecodable", [])
    return TrainResult(d.published, load_bundle(d.published), seconds, skipped)


def prepare(cfg: TrainConfig, progress: Progress = silent) -> PreparedData:
    """``prepare_data`` with a training config's data, size, crop, taxonomy and split."""
    return prepare_data(
        cfg.data,
        image_size=cfg.image_size or get_pretrained_cfg(cfg.model).input_size,
        crop=cfg.crop,
        framing=Framing(cfg.framing, cfg.framing_scale),
        fits_display=FitsDisplay(cfg.fits_stretch, cfg.fits_interval),
        filters=check_filters(cfg.filters.split(",")),
        taxonomy=cfg.taxonomy,
        seed=cfg.seed,
        test_frac=cfg.test_frac,
        val_frac=cfg.val_frac,
        folds=cfg.folds,
        splits_file=cfg.splits,
        data_dir=Path(cfg.data_dir) if cfg.data_dir else None,
        progress=progress,
    )
