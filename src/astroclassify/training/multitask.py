"""One encoder, many heads: a shared backbone trained on every labelled set at once.

Zoobot's lesson (Walmsley et al. 2022; GZ Evo): one encoder answering many questions at
once transfers better than one trained for a single question. Each *head* is a model users
load by name (``dso``, ``morphology``) with its own classes, preprocessing (input size,
central crop) and optional *tags* (soft or multi-label outputs: vote fractions, ``ring``).

A head is trained from *parts*: the datasets whose labels are its classes, and the
datasets that only carry its tags (``gz-decals-rings`` has ring labels and vote fractions,
no Galaxy Zoo 1 class). A batch comes from one part, so every image's loss counts exactly
the labels it has: cross-entropy on classes, soft binary cross-entropy on the tags it has
an answer for (a missing fraction is masked, never read as 0).

``train_encoder(recipe)`` writes one model home per head (``OUT/<head>/``), each a normal
versioned model folder whose ``model.onnx`` is the shared encoder with that head: the same
encoder weights, the same embedding for anomaly detectors and look-alike search.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from astroclassify.errors import ConfigError
from astroclassify.evaluation.calibration import softmax
from astroclassify.evaluation.metrics import classification_metrics
from astroclassify.imaging.augment import build_augment
from astroclassify.imaging.transforms import to_tensor_layout
from astroclassify.imaging.tta import TTA_MODES, merge_views, tta_views
from astroclassify.models import create_model, get_pretrained_cfg
from astroclassify.preparation.prepare import PreparedData, prepare_data
from astroclassify.progress import Progress, silent
from astroclassify.training.config import TrainConfig
from astroclassify.training.train import _load_checkpoint, _plain, _seed_everything, lr_at

__all__ = ["EncoderConfig", "EncoderResult", "HeadSpec", "load_encoder_recipe", "train_encoder"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadSpec:
    """One head: a model users load by name, with its classes, tags and preprocessing."""

    name: str
    classes: tuple[str, ...] = ()  # datasets whose labels are this head's classes
    tags: tuple[str, ...] = ()  # datasets that train only this head's tags
    image_size: int = 224
    crop: float = 1.0
    taxonomy: str = ""
    tta: str = "none"
    flips: bool = True  # a taxonomy's mirror map overrides (flip and swap)
    photo: bool = False  # imitate amateur photographs in augmentation (imaging/augment.py)
    per_epoch: int = 0  # images drawn from each class part per epoch, with replacement (0: as many as it has)
    balance_power: float = 1.0
    splits: str = ""  # reuse a splits.csv for the class datasets (e.g. the old model's split)

    def __post_init__(self) -> None:
        for name in ("classes", "tags"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        if not self.classes:
            raise ConfigError(f"head {self.name!r}: needs at least one dataset under `classes`")
        if self.tta not in TTA_MODES:
            raise ConfigError(f"head {self.name!r}: tta must be one of {', '.join(TTA_MODES)}")


@dataclass(frozen=True)
class EncoderConfig:
    """The shared training recipe: the heads, and the loop's settings (as in ``TrainConfig``)."""

    heads: tuple[HeadSpec, ...]
    out: str = "runs/encoder"
    model: str = "efficientnet_lite0"
    epochs: int = 14
    batch_size: int = 32
    lr: float = 1e-3
    backbone_lr_scale: float = 0.3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.05
    tag_weight: float = 1.0  # the tags' loss relative to a class loss
    patience: int = 4
    seed: int = 0
    test_frac: float = 0.2
    val_frac: float = 0.15
    threads: int = 0
    data_dir: str = ""  # where named collections are found; not the recipe
    extra: dict[str, str] = field(default_factory=dict, hash=False)

    def recipe(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("extra", "data_dir")}

    def datasets(self) -> list[str]:
        return sorted({d for h in self.heads for d in (*h.classes, *h.tags)})


def load_encoder_recipe(path: str | Path, **overrides: Any) -> EncoderConfig:
    """An ``EncoderConfig`` from a YAML recipe (``recipes/encoder.yaml``); keyword overrides win."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the recipe ({exc})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("heads"), dict):
        raise ConfigError(f"{path}: a recipe is a mapping with `heads:` (name: {{classes: [...], ...}})")
    known = {f.name for f in dataclasses.fields(HeadSpec)}
    heads = []
    for name, spec in raw.pop("heads").items():
        unknown = set(spec or {}) - known
        if unknown:
            raise ConfigError(
                f"{path}: head {name!r}: unknown keys {sorted(unknown)}; known: {sorted(known - {'name'})}"
            )
        heads.append(HeadSpec(name=str(name), **(spec or {})))
    fields = {f.name for f in dataclasses.fields(EncoderConfig)} - {"heads"}
    unknown = set(raw) - fields
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
    return EncoderConfig(heads=tuple(heads), **(raw | overrides))


class MultiHeadNet(nn.Module):
    """A zoo backbone's features, pooled, then one linear classifier (and tagger) per head."""

    def __init__(self, arch: str, pretrained: bool, heads: dict[str, tuple[int, int]], drop_rate: float = 0.2):
        super().__init__()
        self.arch = arch
        self.backbone = create_model(arch, pretrained=pretrained, num_classes=1)
        width = int(self.backbone.num_features)
        self.dropout = nn.Dropout(drop_rate)
        self.classifiers = nn.ModuleDict({h: nn.Linear(width, k) for h, (k, _) in heads.items()})
        self.taggers = nn.ModuleDict({h: nn.Linear(width, t) for h, (_, t) in heads.items() if t})

    def head_parameters(self) -> list[nn.Parameter]:
        return [*self.classifiers.parameters(), *self.taggers.parameters()]

    def body_parameters(self) -> list[nn.Parameter]:
        """The encoder's parameters: not the backbone's own (unused) classifier."""
        unused = {id(p) for p in getattr(self.backbone, "head_parameters", list)()}
        return [p for p in self.backbone.parameters() if id(p) not in unused]

    def forward(self, x: torch.Tensor, head: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        pooled = self.dropout(self.backbone.forward_features(x).mean(dim=(2, 3)))
        tags = self.taggers[head](pooled) if head in self.taggers else None
        return self.classifiers[head](pooled), tags


class HeadView(nn.Module):
    """One head of a ``MultiHeadNet`` with the zoo model interface, for export and Grad-CAM."""

    def __init__(self, net: MultiHeadNet, head: str) -> None:
        super().__init__()
        self.net, self.head = net, head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.backbone.forward_features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.net.classifiers[self.head](features.mean(dim=(2, 3)))

    def head_gradient(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net.classifiers[self.head].weight.expand(pooled.shape[0], -1, -1)

    def has_tags(self) -> bool:
        return self.head in self.net.taggers

    def forward_tags(self, features: torch.Tensor) -> torch.Tensor:
        """Tag probabilities (sigmoid): fractions and multi-label tags are not exclusive."""
        return torch.sigmoid(self.net.taggers[self.head](features.mean(dim=(2, 3))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@dataclass
class Part:
    """A prepared dataset group feeding one head: its classes, or only its tags."""

    head: HeadSpec
    role: str  # "classes" | "tags"
    data: PreparedData
    tag_names: list[str]
    targets: np.ndarray  # (N, T) tag targets in [0, 1], NaN where an image has no answer
    mirror: np.ndarray | None

    @property
    def name(self) -> str:
        return f"{self.head.name}:{self.role}"

    def rows(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.data.split == split)


def _label_tags(labels: list[str]) -> list[str]:
    """A tag dataset's labels as tags: ``ring`` from ``ring``/``not_ring``; ``not_*`` labels are the zeros."""
    return [lab for lab in labels if not lab.startswith("not_")]


def _prepare_parts(cfg: EncoderConfig, progress: Progress) -> list[Part]:
    parts: list[Part] = []
    data_dir = Path(cfg.data_dir) if cfg.data_dir else None
    for head in cfg.heads:

        def prepare(
            sources: tuple[str, ...], taxonomy: str = "", splits: str = "", head: HeadSpec = head
        ) -> PreparedData:
            return prepare_data(
                sources,
                image_size=head.image_size,
                crop=head.crop,
                taxonomy=taxonomy or None,
                seed=cfg.seed,
                test_frac=cfg.test_frac,
                val_frac=cfg.val_frac,
                splits_file=splits or None,
                data_dir=data_dir,
                progress=progress,
            )

        classes = prepare(head.classes, head.taxonomy, head.splits)
        tag_data = prepare(head.tags) if head.tags else None
        names: list[str] = []
        if tag_data is not None:
            names = sorted({t for s in tag_data.table.samples for t in s.targets} | set(_label_tags(tag_data.labels)))
        mirror = None
        if classes.taxonomy and classes.taxonomy.mirror:
            mirror = np.array(classes.taxonomy.mirror_index(classes.labels))
        empty = np.full((len(classes.y), len(names)), np.nan, np.float32)
        parts.append(Part(head, "classes", classes, names, empty, mirror))
        if tag_data is not None:
            targets = np.full((len(tag_data.y), len(names)), np.nan, np.float32)
            for i, s in enumerate(tag_data.table.samples):
                answers = dict(s.targets) | {t: float(s.label == t) for t in _label_tags(tag_data.labels)}
                for j, t in enumerate(names):
                    targets[i, j] = answers.get(t, np.nan)
            parts.append(Part(head, "tags", tag_data, names, targets, None))
    return parts


def head_outputs(
    net: MultiHeadNet, part: Part, rows: np.ndarray, tta: str = "none", batch: int = 64
) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean class logits and tag probabilities over the TTA views of ``rows`` of a part."""
    logits, tag_views = _view_outputs(net, part, rows, tta, batch)
    return logits, (None if tag_views is None else (1 / (1 + np.exp(-tag_views))).mean(axis=0))


@torch.no_grad()
def _view_outputs(
    net: MultiHeadNet, part: Part, rows: np.ndarray, tta: str, batch: int = 64
) -> tuple[np.ndarray, np.ndarray | None]:
    """Class logits merged over TTA views, and tag logits per view (views, N, tags)."""
    pre = get_pretrained_cfg(net.arch)
    net.eval()
    logits, tags = [], []
    pixels = part.data.table.pixels
    for start in range(0, len(rows), batch):
        views = tta_views(pixels[rows[start : start + batch]], tta)
        v, n = views.shape[:2]
        x = torch.from_numpy(to_tensor_layout(views.reshape(v * n, *views.shape[2:]), pre.mean, pre.std))
        out, tag_logits = net(x.contiguous(memory_format=torch.channels_last), part.head.name)
        logits.append(merge_views(out.reshape(v, n, -1).numpy(), part.mirror))
        if tag_logits is not None:
            tags.append(tag_logits.reshape(v, n, -1).numpy())
    if not logits:
        return np.zeros((0, len(part.data.labels)), np.float32), None
    return np.concatenate(logits), (np.concatenate(tags, axis=1) if tags else None)


def tag_scores(pred: np.ndarray, targets: np.ndarray, names: list[str]) -> dict[str, dict[str, float]]:
    """Per tag: mean absolute error of the predicted fraction; AUROC, average precision and
    calibration error (top-label ECE of the yes/no answer) where the target is 0/1."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from astroclassify.evaluation.calibration import expected_calibration_error

    out = {}
    for j, name in enumerate(names):
        have = ~np.isnan(targets[:, j])
        t, p = targets[have, j], pred[have, j]
        row: dict[str, float] = {"n": int(have.sum())}
        if have.any():
            row["mae"] = float(np.abs(t - p).mean())
            if set(np.unique(t)) <= {0.0, 1.0} and len(np.unique(t)) == 2:
                row["auroc"] = float(roc_auc_score(t, p))
                row["average_precision"] = float(average_precision_score(t, p))
                row["ece"] = expected_calibration_error(np.stack([1 - p, p], 1), t.astype(int), n_bins=10)
        out[name] = row
    return out


def _validation_score(net: MultiHeadNet, parts: list[Part]) -> dict[str, float]:
    """Per part: macro-F1 (classes) or 1 - mean tag error (tags); their mean drives early stopping."""
    row: dict[str, float] = {}
    for part in parts:
        rows = part.rows("val")
        if not len(rows):
            continue
        logits, tags = head_outputs(net, part, rows)
        if part.role == "classes":
            y = part.data.y[rows]
            m = classification_metrics(
                [part.data.labels[i] for i in y], softmax(logits), part.data.labels, intervals=False
            )
            row[f"val_{part.name}"] = m["macro_f1"]
        elif tags is not None:
            scores = tag_scores(tags, part.targets[rows], part.tag_names)
            row[f"val_{part.name}"] = 1.0 - float(np.mean([s["mae"] for s in scores.values() if "mae" in s]))
    row["val_score"] = float(np.mean(list(row.values()))) if row else 0.0
    return row


def _epoch_batches(cfg: EncoderConfig, parts: list[Part], rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
    """(part index, image rows) for every step of one epoch, parts interleaved at random."""
    batches = []
    for p, part in enumerate(parts):
        train = part.rows("train")
        if not len(train):
            continue
        n = part.head.per_epoch or len(train)
        if part.role == "classes":  # each class drawn about equally often (weights 1/count^power), with replacement
            counts = np.bincount(part.data.y[train], minlength=len(part.data.labels))
            w = np.maximum(counts[part.data.y[train]], 1) ** -part.head.balance_power
            order = rng.choice(train, size=n, replace=True, p=w / w.sum())
        else:
            order = rng.choice(train, size=min(n, len(train)), replace=False)
        batches += [(p, order[i : i + cfg.batch_size]) for i in range(0, len(order), cfg.batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _train_epoch(cfg, parts, net, optimizer, epoch, total_steps, steps_done, progress) -> tuple[dict, int]:
    pre = get_pretrained_cfg(cfg.model)
    rng = np.random.default_rng([cfg.seed, epoch])
    torch.manual_seed(cfg.seed * 1000 + epoch)
    augments = [
        build_augment(flips=p.head.flips and p.mirror is None, photo=p.head.photo, seed=cfg.seed * 1000 + epoch + 7 * i)
        for i, p in enumerate(parts)
    ]
    batches = _epoch_batches(cfg, parts, rng)
    advance = progress(f"epoch {epoch + 1}/{cfg.epochs}", len(batches))
    warmup = int(cfg.warmup_epochs * len(batches))
    losses: dict[str, list[float]] = {p.name: [] for p in parts}
    net.train()
    for p, rows in batches:
        part = parts[p]
        lr = lr_at(steps_done, total_steps, warmup, cfg.lr)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["scale"]
        images = [part.data.table.pixels[i] for i in rows]
        y = part.data.y[rows]
        if part.mirror is not None:  # mirror half the images and give them their mirror class
            flip = rng.random(len(rows)) < 0.5
            images = [np.ascontiguousarray(im[:, ::-1]) if f else im for im, f in zip(images, flip, strict=True)]
            y = np.where(flip, part.mirror[y], y)
        x = torch.from_numpy(to_tensor_layout(np.stack([augments[p](im) for im in images]), pre.mean, pre.std))
        logits, tag_logits = net(x.contiguous(memory_format=torch.channels_last), part.head.name)
        if part.role == "classes":
            loss = F.cross_entropy(logits, torch.from_numpy(y), label_smoothing=cfg.label_smoothing)
        else:
            assert tag_logits is not None
            target = torch.from_numpy(part.targets[rows])
            have = ~torch.isnan(target)  # a tag with no answer for an image is left out of its loss
            loss = cfg.tag_weight * F.binary_cross_entropy_with_logits(tag_logits[have], target[have], reduction="mean")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses[part.name].append(loss.item())
        steps_done += 1
        advance(1)
    row = {"epoch": epoch + 1, "lr": lr} | {f"loss_{k}": float(np.mean(v)) for k, v in losses.items() if v}
    return row, steps_done


@dataclass
class EncoderResult:
    """The heads written: each a model home with a published version."""

    out: Path
    heads: dict[str, Path]  # head name -> the published version folder
    seconds: float
    history: list[dict]

    def test_scores(self) -> dict[str, dict]:
        """Each head's held-out test metrics (scope ``all``), as its model.json keeps them."""
        from astroclassify.modelfolder.folder import load_bundle

        return {h: load_bundle(p).meta.get("metrics", {}).get("test", {}).get("all", {}) for h, p in self.heads.items()}

    def __repr__(self) -> str:
        return f"EncoderResult({', '.join(self.heads)} at {self.out}, {self.seconds:.0f} s)"


def train_encoder(cfg: EncoderConfig, progress: Progress = silent, *, resume: bool = True) -> EncoderResult:
    """Train the shared encoder and its heads; write each head as a model home ``cfg.out/<head>``.

    Parameters
    ----------
    cfg : EncoderConfig
        The heads and the loop's settings (``load_encoder_recipe("recipes/encoder.yaml")``).
    progress : callable, optional
        ``progress(description, total) -> advance(n)``, for progress bars.
    resume : bool
        Continue from ``cfg.out/checkpoint.pt`` (same recipe); ``False`` starts again.

    Returns
    -------
    EncoderResult
        The published version of every head, the time taken and the training history.
    """
    started = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint.pt"
    if not resume:
        checkpoint.unlink(missing_ok=True)
    _seed_everything(cfg.seed)
    parts = _prepare_parts(cfg, progress)
    for part in parts:
        counts = {s: len(part.rows(s)) for s in ("train", "val", "test")}
        log.info(
            "%s: %s images %s, labels %s, tags %s",
            part.name,
            len(part.data.y),
            counts,
            part.data.labels,
            part.tag_names,
        )
    shape = {p.head.name: (len(p.data.labels), len(p.tag_names)) for p in parts if p.role == "classes"}
    pre = get_pretrained_cfg(cfg.model)
    net = MultiHeadNet(cfg.model, pre.weights is not None, shape).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(
        [
            {"params": net.body_parameters(), "scale": cfg.backbone_lr_scale},
            {"params": net.head_parameters(), "scale": 1.0},
        ],
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
    )
    history: list[dict] = []
    best: dict[str, Any] = {"score": -1.0, "epoch": -1, "state": None}
    start_epoch = 0
    config = _plain(dataclasses.asdict(cfg) | {"extra": {}, "data_dir": ""})
    if resume and checkpoint.is_file():
        ck = _load_checkpoint(checkpoint)
        if ck["config"] == config:
            net.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            history, best, start_epoch = ck["history"], ck["best"], ck["epoch"] + 1
            if ck.get("stopped"):  # stopped early: resuming only writes the heads again
                start_epoch = cfg.epochs
            log.info("resumed from %s at epoch %d", checkpoint, start_epoch + 1)
        else:
            log.warning("%s was written with another recipe; starting afresh", checkpoint)
    steps_per_epoch = len(_epoch_batches(cfg, parts, np.random.default_rng(0)))
    total = cfg.epochs * steps_per_epoch
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        row, _ = _train_epoch(cfg, parts, net, optimizer, epoch, total, epoch * steps_per_epoch, progress)
        row |= _validation_score(net, parts)
        if row["val_score"] > best["score"]:
            best = {
                "score": row["val_score"],
                "epoch": epoch + 1,
                "state": {k: v.clone() for k, v in net.state_dict().items()},
            }
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        log.info("epoch %s", json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))
        stop = epoch + 1 - best["epoch"] >= cfg.patience
        torch.save(
            {
                "model": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "config": config,
                "epoch": epoch,
                "history": _plain(history),
                "best": {k: (v if k == "state" else _plain(v)) for k, v in best.items()},
                "stopped": stop,
            },
            checkpoint,
        )
        if stop:
            log.info("early stop: no validation improvement for %d epochs", cfg.patience)
            break
    if best["state"] is not None:
        net.load_state_dict(best["state"])
    net.eval()
    seconds = time.perf_counter() - started
    heads = {
        head.name: _write_head(cfg, head, [p for p in parts if p.head is head], net, history, best["epoch"], seconds)
        for head in cfg.heads
    }
    return EncoderResult(out, heads, seconds, history)


def encoder_id(net: MultiHeadNet) -> str:
    """12 hex digits of SHA-256 over the shared encoder's weights: heads with one id share one encoder."""
    digest = hashlib.sha256()
    unused = {id(p) for p in getattr(net.backbone, "head_parameters", list)()}
    for name, tensor in sorted(net.backbone.state_dict(keep_vars=True).items()):
        if id(tensor) not in unused:
            digest.update(name.encode())
            digest.update(tensor.detach().to(torch.float32).numpy().tobytes())
    return digest.hexdigest()[:12]


def _write_head(
    cfg: EncoderConfig,
    head: HeadSpec,
    parts: list[Part],
    net: MultiHeadNet,
    history: list[dict],
    best_epoch: int,
    seconds: float,
) -> Path:
    """One head as a versioned model folder: the bundle writer's export, calibration and card, plus tags."""
    from astroclassify.evaluation.card import write_model_card
    from astroclassify.modelfolder.versions import adopt, draft
    from astroclassify.preparation.prepare import write_split_file
    from astroclassify.training.bundle_writer import finish_bundle

    classes = next(p for p in parts if p.role == "classes")
    tags = next((p for p in parts if p.role == "tags"), None)
    home = Path(cfg.out) / head.name
    home.mkdir(parents=True, exist_ok=True)
    adopt(home)
    command = cfg.extra.get("command", "")
    train_cfg = TrainConfig(
        data=head.classes,
        out=str(home),
        name=head.name,
        model=cfg.model,
        image_size=head.image_size,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        backbone_lr_scale=cfg.backbone_lr_scale,
        weight_decay=cfg.weight_decay,
        label_smoothing=cfg.label_smoothing,
        balance_power=head.balance_power,
        flips=head.flips,
        taxonomy=head.taxonomy,
        crop=head.crop,
        tta=head.tta,
        seed=cfg.seed,
        test_frac=cfg.test_frac,
        val_frac=cfg.val_frac,
        splits=head.splits,
        data_dir=cfg.data_dir,
        extra={"command": command},
    )
    view = HeadView(net, head.name)
    write_split_file(home / "splits.csv", classes.data)
    info = {
        "config": cfg.recipe(),
        "data": {
            "sources": cfg.datasets(),
            "splits_sha256": hashlib.sha256((home / "splits.csv").read_bytes()).hexdigest(),
        },
    }
    with draft(home, made_by="train-encoder", info=info) as d:
        (d.path / "splits.csv").write_bytes((home / "splits.csv").read_bytes())
        (d.path / "history.json").write_text(json.dumps(history, indent=1) + "\n")
        encoder = {
            "id": encoder_id(net),
            "trained_on": cfg.datasets(),
            "heads": {h.name: {"classes": list(h.classes), "tags": list(h.tags)} for h in cfg.heads},
            "recipe": cfg.recipe(),
        }
        extra: dict[str, Any] = {"encoder": encoder} | ({"tags": tags.tag_names} if tags is not None else {})
        before: dict[str, Any] = {}
        if tags is not None:
            before = _tag_metrics(net, tags, rounds=0).get("test", {})
            extra["tag_temperatures"] = calibrate_tags(net, tags)
        bundle = finish_bundle(
            train_cfg,
            classes.data,
            view,
            d.path,
            name=head.name,
            best_epoch=best_epoch,
            seconds=seconds,
            extra_meta=extra,
            card=False,  # written once, below, with the tags' metrics
        )
        if tags is not None:
            bundle.meta["tag_metrics"] = _tag_metrics(net, tags) | {"temperatures_fitted_on": "val"}
            for name, row in bundle.meta["tag_metrics"].get("test", {}).items():
                if "ece" in before.get(name, {}):
                    row["ece_uncalibrated"] = before[name]["ece"]
            write_split_file(d.path / "tag_splits.csv", tags.data)  # which tag images were held out
        bundle.save()
        write_model_card(bundle)
        test = bundle.meta.get("metrics", {}).get("test", {}).get("all", {})
        d.info["scores"] = {k: test[k] for k in ("n", "accuracy", "macro_f1") if k in test}
    return d.published


def calibrate_tags(net: MultiHeadNet, part: Part) -> dict[str, float]:
    """Temperature-scale each tag on the tag datasets' validation split, folded into the tagger.

    Dividing a tag's weights and bias by its T is exactly sigmoid(z / T), so the exported
    graph, Grad-CAM and every consumer see calibrated tags with no extra step at inference.
    """
    from astroclassify.evaluation.calibration import fit_sigmoid_temperatures

    rows = part.rows("val")
    _, views = _view_outputs(net, part, rows, part.head.tta)
    if views is None or not len(rows):
        return {}
    temps = fit_sigmoid_temperatures(views, part.targets[rows])
    tagger = net.taggers[part.head.name]
    with torch.no_grad():
        scale = torch.from_numpy(1 / temps).to(tagger.weight.dtype)
        tagger.weight.mul_(scale[:, None])
        tagger.bias.mul_(scale)
    log.info("tag temperatures (fitted on val): %s", dict(zip(part.tag_names, np.round(temps, 3), strict=True)))
    return {name: float(t) for name, t in zip(part.tag_names, temps, strict=True)}


def _tag_metrics(net: MultiHeadNet, part: Part, rounds: int = 1000) -> dict[str, Any]:
    """Tag scores on the tag datasets' val and test splits, test with 95% bootstrap intervals over groups."""
    out: dict[str, Any] = {"sources": list(part.head.tags)}
    for split in ("val", "test"):
        rows = part.rows(split)
        if not len(rows):
            continue
        _, pred = head_outputs(net, part, rows, part.head.tta)
        assert pred is not None
        scores = tag_scores(pred, part.targets[rows], part.tag_names)
        if split == "test" and rounds:
            groups = np.array([part.data.groups[i] for i in rows])
            scores = _with_intervals(pred, part.targets[rows], part.tag_names, groups, scores, rounds)
        out[split] = scores
    return out


def _with_intervals(pred, targets, names, groups, scores, rounds: int = 1000) -> dict:
    """Percentile-bootstrap 95% intervals over groups (an object's images resampled together)."""
    from astroclassify.evaluation.metrics import group_resamples

    draws: dict[str, dict[str, list[float]]] = {}
    for rows in group_resamples(groups, rounds):
        for name, row in tag_scores(pred[rows], targets[rows], names).items():
            for k in ("mae", "auroc", "average_precision", "ece"):
                if k in row:
                    draws.setdefault(name, {}).setdefault(k, []).append(row[k])
    for name, metrics in draws.items():
        scores[name]["ci"] = {
            k: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for k, v in metrics.items()
        }
    return scores
