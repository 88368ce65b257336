"""The training loop, read top to bottom: seed, data, model, optimizer, loop, eval, export.

``train(cfg)`` writes a complete model folder: model.onnx + model.json (labels, input
size, normalisation, temperature), splits.csv, history.json/.png, checkpoint.pt, the
test-split evaluation and a model card. ``fit_model`` is the loop; ``training.crossval``
trains one model per fold with it, on the non-test part only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from astroclassify.errors import AstroClassifyError, ConfigError, ModelError
from astroclassify.evaluation.calibration import softmax
from astroclassify.evaluation.metrics import classification_metrics, with_interval
from astroclassify.imaging.augment import build_augment
from astroclassify.imaging.filters import check_filters
from astroclassify.imaging.stretch import FitsDisplay
from astroclassify.imaging.transforms import to_tensor_layout
from astroclassify.imaging.tta import TTA_MODES, merge_views, tta_views
from astroclassify.modelfolder.folder import Bundle
from astroclassify.models import create_model, get_pretrained_cfg
from astroclassify.preparation.prepare import PreparedData, prepare_data, write_split_file
from astroclassify.progress import Progress, silent
from astroclassify.training.config import TrainConfig

__all__ = ["TrainResult", "fit_model", "predict_logits", "prepare", "train"]

log = logging.getLogger(__name__)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


SCHEDULES = ("cosine", "onecycle", "plateau")


def lr_at(step: int, total: int, warmup: int, peak: float, schedule: str = "cosine") -> float:
    """The learning rate at ``step``: a pure function of the step, so resuming is exact.

    cosine: linear warm-up, then cosine decay to 1% of the peak. onecycle (Smith 2018):
    rise from peak/25 to the peak over the first 30% of steps, then anneal to peak/1e4.
    plateau: warm-up, then the peak; the loop multiplies it down when validation stalls.
    """
    if schedule == "onecycle":
        rise = max(1, int(0.3 * total))
        if step < rise:
            return peak / 25 + (peak - peak / 25) * 0.5 * (1 - math.cos(math.pi * step / rise))
        progress = min(1.0, (step - rise) / max(1, total - rise))
        return peak / 1e4 + (peak - peak / 1e4) * 0.5 * (1 + math.cos(math.pi * progress))
    if step < warmup:
        return peak * (step + 1) / warmup
    if schedule == "plateau":
        return peak
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@torch.no_grad()
def predict_logits(
    model: torch.nn.Module,
    pixels: np.ndarray,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    tta: str = "none",
    batch: int = 64,
    mirror: np.ndarray | None = None,
) -> np.ndarray:
    model.eval()
    out = []
    for start in range(0, len(pixels), batch):
        views = tta_views(pixels[start : start + batch], tta)
        v, n = views.shape[:2]
        x = torch.from_numpy(to_tensor_layout(views.reshape(v * n, *views.shape[2:]), mean, std))
        out.append(
            merge_views(model(x.contiguous(memory_format=torch.channels_last)).reshape(v, n, -1).numpy(), mirror)
        )
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _mirror(data: PreparedData) -> np.ndarray | None:
    """Class index of each class's mirror image, when the taxonomy says classes mirror."""
    taxonomy = data.taxonomy
    return np.array(taxonomy.mirror_index(data.labels)) if taxonomy and taxonomy.mirror else None


def _resume_key(config: dict) -> dict:
    """Config fields that must match to resume (the split file, command line and time budget may differ)."""
    return {k: v for k, v in config.items() if k not in {"splits", "extra", "max_minutes"}}


@dataclass
class _Run:
    """What the loop carries from epoch to epoch (and a checkpoint saves)."""

    history: list[dict]
    best: dict[str, Any]  # score, epoch, state (the weights to keep)
    plateau: dict[str, Any]  # plateau schedule: LR factor and the epoch it last changed
    start_epoch: int = 0


def fit_model(
    cfg: TrainConfig,
    data: PreparedData,
    train_idx: np.ndarray,
    val_idx: np.ndarray | None,
    progress: Progress = silent,
    checkpoint: Path | None = None,
) -> tuple[torch.nn.Module, list[dict], int]:
    """One obvious loop. Returns (model with the best validation weights, history, best epoch).

    Per epoch: freeze or thaw the backbone, one pass over the (balanced) training order,
    score validation, adjust a plateau schedule, save a checkpoint, stop early.
    """
    _seed_everything(cfg.seed)
    pre = get_pretrained_cfg(cfg.model)
    model, optimizer, ema, body_params, has_head = _model_and_optimizer(cfg, data, pre)
    scored = ema.module if ema is not None else model  # the weights that are scored and kept
    # A taxonomy with a mirror map (spiral winding) flips images and swaps their labels;
    # otherwise flips are label-preserving or off (cfg.flips).
    mirror = _mirror(data)
    run = _resume(checkpoint, cfg, model, optimizer, ema)
    deadline = time.monotonic() + 60 * cfg.max_minutes if cfg.max_minutes > 0 else None
    for epoch in range(run.start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        # Linear probe first, then fine-tune (LP-FT): a frozen pretrained backbone keeps its
        # features while the fresh head settles, so small datasets overfit less. Frozen epochs
        # skip the backbone's backward pass and keep its BatchNorm statistics.
        frozen = epoch < cfg.freeze_epochs and has_head
        for p in body_params:
            p.requires_grad_(not frozen)
        model.train(not frozen)
        row = _train_epoch(cfg, data, train_idx, epoch, model, optimizer, ema, mirror, run.plateau, progress)
        if val_idx is not None and len(val_idx):
            row |= _validate(scored, data, val_idx, pre.mean, pre.std)
            # Early stopping on macro-F1, ties broken by the lower validation loss.
            score = row["val_macro_f1"] - 1e-3 * row["val_loss"]
            if score > run.best["score"]:
                state = {k: v.clone() for k, v in scored.state_dict().items()}
                run.best = {"score": score, "epoch": epoch + 1, "state": state}
        if (
            cfg.schedule == "plateau"
            and epoch + 1 - max(run.best["epoch"], run.plateau["since"]) >= cfg.plateau_patience
        ):
            run.plateau = {"scale": run.plateau["scale"] * cfg.plateau_factor, "since": epoch + 1}
            log.info("validation stalled: learning rate x%.2f from epoch %d", run.plateau["scale"], epoch + 2)
        row["seconds"] = time.perf_counter() - t0
        run.history.append(row)
        log.info("epoch %s", json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
        if checkpoint:
            _save_checkpoint(checkpoint, cfg, epoch, model, optimizer, ema, run)
        if val_idx is not None and epoch + 1 - run.best["epoch"] >= cfg.patience:
            log.info("early stop: no validation improvement for %d epochs", cfg.patience)
            break
        if deadline is not None and time.monotonic() > deadline and epoch + 1 < cfg.epochs:
            raise TrainingPaused(epoch + 1, cfg.epochs, checkpoint)
    if run.best["state"] is not None:
        scored.load_state_dict(run.best["state"])
    return scored.eval(), run.history, run.best["epoch"]


class TrainingPaused(AstroClassifyError):
    """Training reached its time budget (``max_minutes``) before its last epoch; the checkpoint resumes it."""

    def __init__(self, done: int, epochs: int, checkpoint: Path | None) -> None:
        where = f"; {checkpoint} resumes it" if checkpoint else ""
        super().__init__(f"time budget reached after epoch {done} of {epochs}{where}")
        self.done, self.epochs, self.checkpoint = done, epochs, checkpoint


def _model_and_optimizer(cfg: TrainConfig, data: PreparedData, pre: Any) -> tuple[Any, Any, Any, list, bool]:
    """The network, AdamW with a slower backbone (discriminative learning rates), and an optional EMA."""
    pretrained = cfg.pretrained and pre.weights is not None
    model = create_model(cfg.model, pretrained=pretrained, num_classes=len(data.labels))
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    head = {id(p) for p in model.head_parameters()} if hasattr(model, "head_parameters") else set()
    head_params = [p for p in model.parameters() if id(p) in head]
    body_params = [p for p in model.parameters() if id(p) not in head]
    backbone_scale = cfg.backbone_lr_scale if head_params and pretrained else 1.0  # nothing to preserve from scratch
    groups = [{"params": body_params, "scale": backbone_scale}]
    if head_params:
        groups.append({"params": head_params, "scale": 1.0})
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    # Optional exponential moving average of the weights (and BN statistics), a common
    # smoother for noisy small-batch fine-tuning; off by default and not in the dso recipe.
    ema = None
    if cfg.ema_decay > 0:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    return model, optimizer, ema, body_params, bool(head_params)


def _train_epoch(
    cfg: TrainConfig,
    data: PreparedData,
    train_idx: np.ndarray,
    epoch: int,
    model: Any,
    optimizer: Any,
    ema: Any,
    mirror: np.ndarray | None,
    plateau: dict[str, Any],
    progress: Progress,
) -> dict:
    """One pass over the training images: the steps of one epoch. Returns the epoch's training scores."""
    steps_per_epoch = math.ceil(len(train_idx) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    pre = get_pretrained_cfg(cfg.model)
    # Every random stream is seeded per epoch, so a resumed run equals an uninterrupted one.
    rng = np.random.default_rng([cfg.seed, epoch])
    augment = build_augment(flips=cfg.flips and mirror is None, seed=cfg.seed * 1000 + epoch)
    torch.manual_seed(cfg.seed * 1000 + epoch)
    order = _epoch_order(cfg, data, train_idx, rng)
    advance = progress(f"epoch {epoch + 1}/{cfg.epochs}", steps_per_epoch)
    run_loss = run_correct = seen = 0.0
    lr = cfg.lr
    for step_in_epoch in range(steps_per_epoch):
        step = epoch * steps_per_epoch + step_in_epoch
        lr = lr_at(step, total_steps, warmup, cfg.lr, cfg.schedule) * plateau["scale"]
        for group in optimizer.param_groups:
            group["lr"] = lr * group["scale"]
        idx = order[step_in_epoch * cfg.batch_size : (step_in_epoch + 1) * cfg.batch_size]
        images, y_batch = [data.table.pixels[i] for i in idx], data.y[idx]
        if mirror is not None:  # mirror half the images and give them their mirror class
            flip = rng.random(len(idx)) < 0.5
            images = [np.ascontiguousarray(im[:, ::-1]) if f else im for im, f in zip(images, flip, strict=True)]
            y_batch = np.where(flip, mirror[y_batch], y_batch)
        batch = np.stack([augment(im) for im in images])
        x = torch.from_numpy(to_tensor_layout(batch, pre.mean, pre.std))
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        target = torch.from_numpy(y_batch)
        logits = model(x)
        loss = F.cross_entropy(logits, target, label_smoothing=cfg.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update_parameters(model)
        run_loss += loss.item() * len(idx)
        run_correct += float((logits.argmax(1) == target).sum())
        seen += len(idx)
        advance(1)
    return {"epoch": epoch + 1, "lr": lr, "train_loss": run_loss / seen, "train_accuracy": run_correct / seen}


def _epoch_order(cfg: TrainConfig, data: PreparedData, train_idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The training images of one epoch, in order: a permutation, or a class-balanced draw."""
    if not cfg.balanced_sampling:
        return rng.permutation(train_idx)
    y_train = data.y[train_idx]
    counts = np.bincount(y_train, minlength=len(data.labels))
    weights = np.maximum(counts[y_train], 1) ** -cfg.balance_power
    return rng.choice(train_idx, size=len(train_idx), replace=True, p=weights / weights.sum())


def _validate(scored: Any, data: PreparedData, val_idx: np.ndarray, mean: tuple, std: tuple) -> dict:
    val_logits = predict_logits(scored, data.table.pixels[val_idx], mean, std)
    val_y = data.y[val_idx]
    metrics = classification_metrics([data.labels[i] for i in val_y], softmax(val_logits), data.labels, intervals=False)
    return {
        "val_loss": float(F.cross_entropy(torch.from_numpy(val_logits), torch.from_numpy(val_y))),
        "val_accuracy": metrics["accuracy"],
        "val_macro_f1": metrics["macro_f1"],
    }


def _resume(checkpoint: Path | None, cfg: TrainConfig, model: Any, optimizer: Any, ema: Any) -> _Run:
    """Where a previous run of the same config left off (its checkpoint), or a fresh start."""
    run = _Run(history=[], best={"score": -1.0, "state": None, "epoch": -1}, plateau={"scale": 1.0, "since": 0})
    if not (checkpoint and checkpoint.is_file()):
        return run
    ck = _load_checkpoint(checkpoint)
    if _resume_key(ck["config"]) != _resume_key(_plain(dataclasses.asdict(cfg))):
        log.warning("%s was written with another config; starting afresh", checkpoint)
        return run
    model.load_state_dict(ck["model"])
    optimizer.load_state_dict(ck["optimizer"])
    if ema is not None and ck.get("ema"):
        ema.load_state_dict(ck["ema"])
    run = _Run(ck["history"], ck["best"], ck.get("plateau", run.plateau), ck["epoch"] + 1)
    log.info("resumed from %s at epoch %d", checkpoint, run.start_epoch + 1)
    return run


def _load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's state dicts and plain values, never code.

    A run folder may come from someone else; ``weights_only=True`` unpickles tensors, dicts,
    lists and numbers only, so a pickled ``os.system`` is refused instead of run.
    """
    import pickle

    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        reason = "it holds objects other than tensors and plain values, which are never unpickled"
    except Exception as exc:  # RuntimeError, EOFError, ... for damaged or foreign files
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    else:
        missing = {"model", "optimizer", "config", "epoch", "history", "best"} - set(ck if isinstance(ck, dict) else ())
        if not missing:
            return ck
        reason = f"missing {', '.join(sorted(missing))}"
    raise ModelError(
        f"{path}: not a checkpoint this version can resume from ({reason}); move it away or start over with --fresh"
    )


def _plain(value: Any) -> Any:
    """Tuples as lists and NumPy scalars as Python numbers: what a weights-only load gives back."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _save_checkpoint(path: Path, cfg: TrainConfig, epoch: int, model: Any, optimizer: Any, ema: Any, run: _Run) -> None:
    """State dicts and plain values only, so that ``_load_checkpoint`` can read it weights-only."""
    best = {k: (v if k == "state" else _plain(v)) for k, v in run.best.items()}
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "config": _plain(dataclasses.asdict(cfg)),
            "epoch": epoch,
            "history": _plain(run.history),
            "best": best,
            "plateau": _plain(run.plateau),
        },
        path,
    )


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

    if cfg.tta not in TTA_MODES:
        raise ConfigError(f"tta must be one of {', '.join(TTA_MODES)}; got {cfg.tta!r}")
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}; got {cfg.schedule!r}")
    started = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    home = Path(cfg.out)  # the model's home: its versions, and training's working files
    home.mkdir(parents=True, exist_ok=True)
    adopt(home)  # a folder trained before versions existed becomes version one of itself
    if not resume:
        (home / "checkpoint.pt").unlink(missing_ok=True)
    resume_splits = home / "splits.csv"
    if (home / "checkpoint.pt").is_file():
        _load_checkpoint(home / "checkpoint.pt")  # a foreign or damaged file: refused before any decoding
        if resume_splits.is_file() and not cfg.splits:
            cfg = dataclasses.replace(cfg, splits=str(resume_splits))  # resuming: keep the same split
    data = prepare(cfg, progress)
    write_split_file(home / "splits.csv", data)
    train_idx = np.flatnonzero(data.split == "train")
    val_idx = np.flatnonzero(data.split == "val")
    log.info("split: %d train, %d val, %d test images", len(train_idx), len(val_idx), int((data.split == "test").sum()))

    model, history, best_epoch = fit_model(cfg, data, train_idx, val_idx, progress, checkpoint=home / "checkpoint.pt")
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
