"""The one training loop (nanoGPT's lesson): every model, one head or many, trains here.

A *part* is a prepared dataset feeding one head: its classes (cross-entropy), or only its
tags (soft binary cross-entropy on the answers an image has). A plain model is one part
on a zoo network; a shared encoder is several parts on a ``MultiHeadNet``. Per epoch:
freeze or thaw the backbone, one pass over the parts' (balanced) draws, score validation,
adjust a plateau schedule, save a checkpoint, stop early or at the time budget.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from astroclassify.errors import AstroClassifyError, ModelError
from astroclassify.evaluation.calibration import softmax
from astroclassify.evaluation.metrics import classification_metrics
from astroclassify.evaluation.tags import tag_scores
from astroclassify.imaging.augment import build_augment
from astroclassify.imaging.transforms import to_tensor_layout
from astroclassify.imaging.tta import merge_views, tta_views
from astroclassify.models import get_pretrained_cfg
from astroclassify.models.multihead import MultiHeadNet
from astroclassify.preparation.prepare import PreparedData
from astroclassify.progress import Progress, silent
from astroclassify.training.config import HeadSpec, TrainConfig

__all__ = [
    "Part",
    "TrainingPaused",
    "class_mirror",
    "fit",
    "load_checkpoint",
    "lr_at",
    "network_outputs",
    "plain",
    "resume_key",
    "seed_everything",
]

log = logging.getLogger(__name__)

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


@dataclass
class Part:
    """A prepared dataset feeding one head: its classes, or only its tags."""

    head: HeadSpec
    role: str  # "classes" | "tags"
    data: PreparedData
    train: np.ndarray  # rows the loop trains on
    val: np.ndarray  # rows that choose the epoch (may be empty: train for exactly cfg.epochs)
    tag_names: list[str] = field(default_factory=list)
    targets: np.ndarray | None = None  # (N, T) tag targets in [0, 1], NaN where an image has no answer

    @classmethod
    def of(cls, head: HeadSpec, role: str, data: PreparedData, **tags: Any) -> Part:
        """A part trained on its data's train split and validated on its val split."""
        train, val = (np.flatnonzero(data.split == s) for s in ("train", "val"))
        return cls(head, role, data, train, val, **tags)

    @property
    def name(self) -> str:
        return f"{self.head.name}:{self.role}"

    @property
    def mirror(self) -> np.ndarray | None:
        return class_mirror(self.data)

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.data.split == split)


def class_mirror(data: PreparedData) -> np.ndarray | None:
    """Class index of each class's mirror image, when the taxonomy says classes mirror (spiral winding)."""
    taxonomy = data.taxonomy
    return np.array(taxonomy.mirror_index(data.labels)) if taxonomy and taxonomy.mirror else None


def _forward(net: torch.nn.Module, x: torch.Tensor, head: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Class logits and tag logits (None without tags): a zoo model has one head and no tags."""
    return net(x, head) if isinstance(_unwrapped(net), MultiHeadNet) else (net(x), None)


def _unwrapped(net: torch.nn.Module) -> torch.nn.Module:
    return getattr(net, "module", net)  # an EMA's averaged copy


@torch.no_grad()
def network_outputs(
    net: torch.nn.Module,
    pixels: np.ndarray,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    tta: str = "none",
    *,
    head: str = "",
    mirror: np.ndarray | None = None,
    batch: int = 64,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Class logits merged over the TTA views, and tag logits per view ``(views, N, tags)`` or None."""
    net.eval()
    logits, tags = [], []
    for start in range(0, len(pixels), batch):
        views = tta_views(pixels[start : start + batch], tta)
        v, n = views.shape[:2]
        x = torch.from_numpy(to_tensor_layout(views.reshape(v * n, *views.shape[2:]), mean, std))
        out, tag_logits = _forward(net, x.contiguous(memory_format=torch.channels_last), head)
        logits.append(merge_views(out.reshape(v, n, -1).numpy(), mirror))
        if tag_logits is not None:
            tags.append(tag_logits.reshape(v, n, -1).numpy())
    if not logits:
        return np.zeros((0, 0), np.float32), None
    return np.concatenate(logits), (np.concatenate(tags, axis=1) if tags else None)


class TrainingPaused(AstroClassifyError):
    """Training reached its time budget (``max_minutes``) before its last epoch; the checkpoint resumes it."""

    def __init__(self, done: int, epochs: int, checkpoint: Path | None, step: int = 0) -> None:
        where = f"; {checkpoint} resumes it" if checkpoint else ""
        at = f"in epoch {done + 1} of {epochs}, after step {step}" if step else f"after epoch {done} of {epochs}"
        super().__init__(f"time budget reached {at}{where}")
        self.done, self.epochs, self.checkpoint, self.step = done, epochs, checkpoint, step


@dataclass
class _Run:
    """What the loop carries from epoch to epoch (and a checkpoint saves)."""

    history: list[dict]
    best: dict[str, Any]  # score, epoch, state (the weights to keep)
    plateau: dict[str, Any]  # plateau schedule: LR factor and the epoch it last changed
    start_epoch: int = 0
    start_step: int = 0  # steps of start_epoch already taken (a run paused mid-epoch)


class _OutOfTime(Exception):
    """The time budget ran out between two steps, after ``steps`` of the epoch."""

    def __init__(self, steps: int) -> None:
        self.steps = steps


def fit(
    cfg: TrainConfig,
    net: torch.nn.Module,
    parts: list[Part],
    progress: Progress = silent,
    checkpoint: Path | None = None,
    recipe: dict | None = None,
    deadline: float | None = None,
) -> tuple[torch.nn.Module, list[dict], int]:
    """Train ``net`` on ``parts``. Returns (the network with the best validation weights, history, best epoch).

    ``recipe`` is what must match for ``checkpoint`` to be resumed (plain values). The time
    budget (``deadline``, a ``time.monotonic()`` instant; default ``cfg.max_minutes`` from now)
    is checked between steps: a run out of time saves where it is, mid-epoch, and the next
    run goes on from that step, so a budget holds within one step and every run progresses.
    """
    pre = get_pretrained_cfg(cfg.model)
    pretrained = cfg.pretrained and pre.weights is not None
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    optimizer, body_params, has_head = _optimizer(cfg, net, pretrained)
    ema = None
    if cfg.ema_decay > 0:
        # An exponential moving average of the weights (and BN statistics), a common smoother
        # for noisy small-batch fine-tuning; off by default and in the bundled recipes.
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    scored = ema.module if ema is not None else net  # the weights that are scored and kept
    recipe = plain(recipe or {})
    run = _resume(checkpoint, recipe, net, optimizer, ema, cfg.epochs)
    validating = any(len(p.val) for p in parts)
    steps_per_epoch = len(_epoch_batches(cfg, parts, np.random.default_rng(0)))
    if deadline is None and cfg.max_minutes > 0:
        deadline = time.monotonic() + 60 * cfg.max_minutes
    for epoch in range(run.start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        # Linear probe first, then fine-tune (LP-FT): a frozen pretrained backbone keeps its
        # features while the fresh head settles, so small datasets overfit less. Frozen epochs
        # skip the backbone's backward pass and keep its BatchNorm statistics.
        frozen = epoch < cfg.freeze_epochs and has_head
        for p in body_params:
            p.requires_grad_(not frozen)
        net.train(not frozen)
        skip = run.start_step if epoch == run.start_epoch else 0  # steps a paused run already took
        try:
            row = _train_epoch(
                cfg, parts, epoch, steps_per_epoch, net, optimizer, ema, run.plateau, progress, skip, deadline
            )
        except _OutOfTime as out:
            if checkpoint:
                _save_checkpoint(checkpoint, recipe, epoch - 1, net, optimizer, ema, run, stopped=False, step=out.steps)
            raise TrainingPaused(epoch, cfg.epochs, checkpoint, out.steps) from None
        if validating:
            scores, score = _validate(scored, parts, pre.mean, pre.std)
            row |= scores | ({"val_score": score} if len(parts) > 1 else {})
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
        stop = validating and epoch + 1 - run.best["epoch"] >= cfg.patience
        if checkpoint:
            _save_checkpoint(checkpoint, recipe, epoch, net, optimizer, ema, run, stopped=stop)
        if stop:
            log.info("early stop: no validation improvement for %d epochs", cfg.patience)
            break
        if deadline is not None and time.monotonic() > deadline and epoch + 1 < cfg.epochs:
            raise TrainingPaused(epoch + 1, cfg.epochs, checkpoint)  # out of time at an epoch's end
    if run.best["state"] is not None:
        scored.load_state_dict(run.best["state"])
    return scored.eval(), run.history, run.best["epoch"]


def _optimizer(cfg: TrainConfig, net: torch.nn.Module, pretrained: bool) -> tuple[Any, list, bool]:
    """AdamW with a slower backbone (discriminative learning rates); and the backbone's parameters."""
    head = {id(p) for p in net.head_parameters()} if hasattr(net, "head_parameters") else set()
    head_params = [p for p in net.parameters() if id(p) in head]
    body_params = [p for p in net.parameters() if id(p) not in head]
    backbone_scale = cfg.backbone_lr_scale if head_params and pretrained else 1.0  # nothing to preserve from scratch
    groups = [{"params": body_params, "scale": backbone_scale}]
    if head_params:
        groups.append({"params": head_params, "scale": 1.0})
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay), body_params, bool(head_params)


def _epoch_batches(cfg: TrainConfig, parts: list[Part], rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
    """(part index, image rows) for every step of one epoch, parts interleaved at random.

    A class part draws each class about equally often (weights 1/count**power, with
    replacement) unless its head says otherwise; a tag part draws its images once each.
    """
    batches = []
    for p, part in enumerate(parts):
        if not len(part.train):
            continue
        n = part.head.per_epoch or len(part.train)
        if part.role == "classes" and part.head.balanced:
            w = _cell_sizes(part) ** -part.head.balance_power
            order = rng.choice(part.train, size=n, replace=True, p=w / w.sum())
        elif n >= len(part.train):
            order = rng.permutation(part.train)
        else:
            order = rng.choice(part.train, size=n, replace=False)
        batches += [(p, order[i : i + cfg.batch_size]) for i in range(0, len(order), cfg.batch_size)]
    return batches if len(parts) == 1 else [batches[i] for i in rng.permutation(len(batches))]


def _cell_sizes(part: Part) -> np.ndarray:
    """For each training row, how many training rows share its cell: its class, or its class in its dataset."""
    y = part.data.y[part.train]
    if part.head.balance_by == "dataset":
        samples = part.data.table.samples
        keys = [f"{samples[i].dataset}\0{label}" for i, label in zip(part.train, y, strict=True)]
        _, cell, counts = np.unique(keys, return_inverse=True, return_counts=True)
        return counts[cell].astype(float)
    return np.bincount(y, minlength=len(part.data.labels))[y].astype(float)


def _train_epoch(
    cfg: TrainConfig,
    parts: list[Part],
    epoch: int,
    steps_per_epoch: int,
    net: Any,
    optimizer: Any,
    ema: Any,
    plateau: dict[str, Any],
    progress: Progress,
    skip: int = 0,
    deadline: float | None = None,
) -> dict:
    """One pass over the epoch's draws: its steps (the first ``skip`` taken by a paused run). Returns
    the epoch's training losses (and accuracy); raises ``_OutOfTime`` when ``deadline`` passes."""
    pre = get_pretrained_cfg(cfg.model)
    total_steps = cfg.epochs * steps_per_epoch
    warmup = int(cfg.warmup_epochs * steps_per_epoch)
    # Every random stream is seeded per epoch, so a resumed run equals an uninterrupted one.
    rng = np.random.default_rng([cfg.seed, epoch])
    torch.manual_seed(cfg.seed * 1000 + epoch)
    augments = [
        build_augment(flips=p.head.flips and p.mirror is None, photo=p.head.photo, seed=cfg.seed * 1000 + epoch + 7 * i)
        for i, p in enumerate(parts)
    ]
    mirrors = [p.mirror for p in parts]
    batches = _epoch_batches(cfg, parts, rng)
    advance = progress(f"epoch {epoch + 1}/{cfg.epochs}", len(batches))
    sums: dict[str, list[float]] = {p.name: [0.0, 0.0, 0.0] for p in parts}  # loss, correct, seen
    lr = cfg.lr
    advance(min(skip, len(batches)))
    for step_in_epoch, (p, rows) in enumerate(batches):
        part, mirror = parts[p], mirrors[p]
        if step_in_epoch < skip:  # taken before a pause: draw its flips, so the rest sees the same stream
            if mirror is not None:
                rng.random(len(rows))
            continue
        if deadline is not None and time.monotonic() > deadline and step_in_epoch > skip:
            raise _OutOfTime(step_in_epoch)
        lr = lr_at(epoch * steps_per_epoch + step_in_epoch, total_steps, warmup, cfg.lr, cfg.schedule)
        lr *= plateau["scale"]
        for group in optimizer.param_groups:
            group["lr"] = lr * group["scale"]
        images, y = [part.data.table.pixels[i] for i in rows], part.data.y[rows]
        if mirror is not None:  # mirror half the images and give them their mirror class
            flip = rng.random(len(rows)) < 0.5
            images = [np.ascontiguousarray(im[:, ::-1]) if f else im for im, f in zip(images, flip, strict=True)]
            y = np.where(flip, mirror[y], y)
        x = torch.from_numpy(to_tensor_layout(np.stack([augments[p](im) for im in images]), pre.mean, pre.std))
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        logits, tag_logits = _forward(net, x, part.head.name)
        if part.role == "classes":
            target = torch.from_numpy(y)
            loss = F.cross_entropy(logits, target, label_smoothing=cfg.label_smoothing)
            sums[part.name][1] += float((logits.argmax(1) == target).sum())
        else:
            assert tag_logits is not None and part.targets is not None
            answers = torch.from_numpy(part.targets[rows])
            have = ~torch.isnan(answers)  # a tag with no answer for an image is left out of its loss
            loss = cfg.tag_weight * F.binary_cross_entropy_with_logits(tag_logits[have], answers[have])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ema is not None:
            ema.update_parameters(net)
        sums[part.name][0] += loss.item() * len(rows)
        sums[part.name][2] += len(rows)
        advance(1)
    row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr}
    if len(parts) == 1:  # a plain model: the names its history has always had
        loss_sum, correct, seen = sums[parts[0].name]
        return row | {"train_loss": loss_sum / max(seen, 1), "train_accuracy": correct / max(seen, 1)}
    return row | {f"loss_{k}": s[0] / s[2] for k, s in sums.items() if s[2]}


def _validate(net: Any, parts: list[Part], mean: tuple, std: tuple) -> tuple[dict[str, float], float]:
    """Each part's validation scores, and the mean of their summaries, which chooses the epoch.

    A class part scores macro-F1, ties broken by the lower loss; a tag part 1 - mean tag error.
    """
    row: dict[str, float] = {}
    scores = []
    for part in parts:
        if not len(part.val):
            continue
        pixels = part.data.table.pixels[part.val]
        logits, tag_views = network_outputs(net, pixels, mean, std, head=part.head.name)
        prefix = "val_" if len(parts) == 1 else f"val_{part.name}_"
        if part.role == "classes":
            y = part.data.y[part.val]
            m = classification_metrics(
                [part.data.labels[i] for i in y], softmax(logits), part.data.labels, intervals=False
            )
            loss = float(F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(y)))
            row |= {f"{prefix}loss": loss, f"{prefix}accuracy": m["accuracy"], f"{prefix}macro_f1": m["macro_f1"]}
            scores.append(m["macro_f1"] - 1e-3 * loss)
        elif tag_views is not None and part.targets is not None:
            pred = (1 / (1 + np.exp(-tag_views))).mean(axis=0)
            errors = [s["mae"] for s in tag_scores(pred, part.targets[part.val], part.tag_names).values() if "mae" in s]
            row[f"{prefix}tag_mae"] = float(np.mean(errors)) if errors else 1.0
            scores.append(1.0 - row[f"{prefix}tag_mae"])
    return row, float(np.mean(scores)) if scores else 0.0


def _resume(checkpoint: Path | None, recipe: dict, net: Any, optimizer: Any, ema: Any, epochs: int) -> _Run:
    """Where a previous run of the same recipe left off (its checkpoint), or a fresh start."""
    run = _Run(history=[], best={"score": -1.0, "state": None, "epoch": -1}, plateau={"scale": 1.0, "since": 0})
    if not (checkpoint and checkpoint.is_file()):
        return run
    ck = load_checkpoint(checkpoint)
    if ck["config"] != recipe:
        log.warning("%s was written with another recipe; starting afresh", checkpoint)
        return run
    net.load_state_dict(ck["model"])
    optimizer.load_state_dict(ck["optimizer"])
    if ema is not None and ck.get("ema"):
        ema.load_state_dict(ck["ema"])
    # Stopped early: resuming trains no more, it only writes the model again.
    start = epochs if ck.get("stopped") else ck["epoch"] + 1
    run = _Run(ck["history"], ck["best"], ck.get("plateau", run.plateau), start, int(ck.get("step", 0)))
    where = f", step {run.start_step + 1}" if run.start_step else ""
    log.info("resumed from %s at epoch %d%s", checkpoint, run.start_epoch + 1, where)
    return run


def load_checkpoint(path: Path) -> dict[str, Any]:
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


def plain(value: Any) -> Any:
    """Tuples as lists and NumPy scalars as Python numbers: what a weights-only load gives back."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def resume_key(cfg: TrainConfig) -> dict:
    """Config fields that must match to resume (not ``_MAY_DIFFER``'s)."""
    return {k: v for k, v in plain(dataclasses.asdict(cfg)).items() if k not in _MAY_DIFFER}


# A run resumes whatever these say now: where data and splits are, the command line, the time
# budget, and the epoch count (more or fewer epochs stretch or shorten the schedule from here).
_MAY_DIFFER = {"splits", "extra", "max_minutes", "data_dir", "epochs"}


def _save_checkpoint(
    path: Path, recipe: dict, epoch: int, net: Any, optimizer: Any, ema: Any, run: _Run, stopped: bool, step: int = 0
) -> None:
    """State dicts and plain values only, so that ``load_checkpoint`` can read it weights-only."""
    torch.save(
        {
            "model": net.state_dict(),
            "optimizer": optimizer.state_dict(),
            "ema": ema.state_dict() if ema is not None else None,
            "config": recipe,
            "epoch": epoch,
            "history": plain(run.history),
            "best": {k: (v if k == "state" else plain(v)) for k, v in run.best.items()},
            "plateau": plain(run.plateau),
            "stopped": stopped,
            "step": step,  # steps of epoch + 1 already taken (a pause mid-epoch)
        },
        path,
    )
