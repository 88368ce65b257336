"""One encoder, many heads: a shared backbone trained on every labelled set at once.

Zoobot's lesson (Walmsley et al. 2022; GZ Evo): one encoder answering many questions at
once transfers better than one trained for a single question. Each *head* is a model users
load by name (``dso``, ``morphology``) with its own classes, preprocessing (input size,
central crop) and optional *tags* (soft or multi-label outputs: vote fractions, ``ring``).

A head is trained from *parts* (``training.loop.Part``): the datasets whose labels are its
classes, and the datasets that only carry its tags (``gz-decals-rings`` has ring labels and
vote fractions, no Galaxy Zoo 1 class). The one loop steps over them; a batch comes from one
part, so every image's loss counts exactly the labels it has.

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

from astroclassify.errors import ConfigError
from astroclassify.evaluation.tags import tag_scores, tag_scores_with_intervals
from astroclassify.imaging.framing import Framing
from astroclassify.models import get_pretrained_cfg
from astroclassify.models.multihead import HeadView, MultiHeadNet, encoder_id
from astroclassify.preparation.prepare import PreparedData, prepare_data
from astroclassify.progress import Progress, silent
from astroclassify.training.config import HEAD_FIELDS, HeadSpec, TrainConfig
from astroclassify.training.loop import Part, fit, network_outputs, plain, resume_key, seed_everything

__all__ = ["EncoderConfig", "EncoderResult", "head_outputs", "load_encoder_recipe", "train_encoder"]

log = logging.getLogger(__name__)

# TrainConfig fields a recipe sets per head (under `heads:`), never for the whole encoder.
_PER_HEAD = {*HEAD_FIELDS, "name", "extra"}


@dataclass(frozen=True)
class EncoderConfig:
    """The heads, and the one loop's settings for the shared encoder (a ``TrainConfig``; its per-head fields unused)."""

    heads: tuple[HeadSpec, ...]
    train: TrainConfig = field(default_factory=lambda: TrainConfig(out="runs/encoder"))

    def recipe(self) -> dict[str, Any]:
        shared = {k: v for k, v in self.train.recipe().items() if k not in _PER_HEAD}
        return {"heads": [dataclasses.asdict(h) for h in self.heads]} | shared

    def datasets(self) -> list[str]:
        return sorted({d for h in self.heads for d in (*h.classes, *h.tags)})


def load_encoder_recipe(path: str | Path, **overrides: Any) -> EncoderConfig:
    """An ``EncoderConfig`` from a YAML recipe (``recipes/encoder.yaml``); keyword overrides (``TrainConfig`` fields) win."""
    from astroclassify.files.yamltext import read_yaml

    raw = read_yaml(path)
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
    per_head = set(raw) & _PER_HEAD
    unknown = set(raw) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown or per_head:
        where = f"; set {sorted(per_head)} per head" if per_head else ""
        raise ConfigError(f"{path}: unknown keys {sorted(unknown | per_head)}{where}")
    return EncoderConfig(heads=tuple(heads), train=TrainConfig(**(raw | overrides)))


def _label_tags(labels: list[str]) -> list[str]:
    """A tag dataset's labels as tags: ``ring`` from ``ring``/``not_ring``; ``not_*`` labels are the zeros."""
    return [lab for lab in labels if not lab.startswith("not_")]


def _prepare_parts(cfg: EncoderConfig, progress: Progress) -> list[Part]:
    parts: list[Part] = []
    loop = cfg.train
    data_dir = Path(loop.data_dir) if loop.data_dir else None
    for head in cfg.heads:

        def prepare(
            sources: tuple[str, ...], taxonomy: str = "", splits: str = "", head: HeadSpec = head
        ) -> PreparedData:
            return prepare_data(
                sources,
                image_size=head.image_size,
                crop=head.crop,
                framing=Framing(head.framing, head.framing_scale),
                taxonomy=taxonomy or None,
                seed=loop.seed,
                test_frac=loop.test_frac,
                val_frac=loop.val_frac,
                splits_file=splits or None,
                data_dir=data_dir,
                progress=progress,
            )

        classes = prepare(head.classes, head.taxonomy, head.splits)
        tag_data = prepare(head.tags) if head.tags else None
        names: list[str] = []
        if tag_data is not None:
            names = sorted({t for s in tag_data.table.samples for t in s.targets} | set(_label_tags(tag_data.labels)))
        empty = np.full((len(classes.y), len(names)), np.nan, np.float32)
        parts.append(Part.of(head, "classes", classes, tag_names=names, targets=empty))
        if tag_data is not None:
            targets = np.full((len(tag_data.y), len(names)), np.nan, np.float32)
            for i, s in enumerate(tag_data.table.samples):
                answers = dict(s.targets) | {t: float(s.label == t) for t in _label_tags(tag_data.labels)}
                for j, t in enumerate(names):
                    targets[i, j] = answers.get(t, np.nan)
            parts.append(Part.of(head, "tags", tag_data, tag_names=names, targets=targets))
    return parts


def head_outputs(
    net: MultiHeadNet, part: Part, rows: np.ndarray, tta: str = "none"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean class logits and tag probabilities over the TTA views of ``rows`` of a part."""
    pre = get_pretrained_cfg(net.arch)
    pixels = part.data.table.pixels[rows]
    logits, tag_views = network_outputs(net, pixels, pre.mean, pre.std, tta, head=part.head.name, mirror=part.mirror)
    return logits, (None if tag_views is None else (1 / (1 + np.exp(-tag_views))).mean(axis=0))


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
    """Train the shared encoder and its heads through the one loop; write each head as a model home ``out/<head>``.

    Parameters
    ----------
    cfg : EncoderConfig
        The heads and the loop's settings (``load_encoder_recipe("recipes/encoder.yaml")``).
    progress : callable, optional
        ``progress(description, total) -> advance(n)``, for progress bars.
    resume : bool
        Continue from ``out/checkpoint.pt`` (same recipe); ``False`` starts again.

    Raises
    ------
    TrainingPaused
        ``max_minutes`` ran out before the last epoch; the checkpoint is kept.

    Returns
    -------
    EncoderResult
        The published version of every head, the time taken and the training history.
    """
    started = time.perf_counter()
    loop = cfg.train
    if loop.threads:
        torch.set_num_threads(loop.threads)
    out = Path(loop.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / "checkpoint.pt"
    if not resume:
        checkpoint.unlink(missing_ok=True)
    seed_everything(loop.seed)
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
    pre = get_pretrained_cfg(loop.model)
    net = MultiHeadNet(loop.model, loop.pretrained and pre.weights is not None, shape)
    recipe = {"heads": plain([dataclasses.asdict(h) for h in cfg.heads])} | resume_key(loop)
    scored, history, best_epoch = fit(loop, net, parts, progress, checkpoint, recipe)
    assert isinstance(scored, MultiHeadNet)
    seconds = time.perf_counter() - started
    heads = {
        head.name: _write_head(cfg, head, [p for p in parts if p.head is head], scored, history, best_epoch, seconds)
        for head in cfg.heads
    }
    return EncoderResult(out, heads, seconds, history)


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
    home = Path(cfg.train.out) / head.name
    home.mkdir(parents=True, exist_ok=True)
    adopt(home)
    train_cfg = cfg.train.for_head(head, out=str(home), name=head.name)
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
    pre = get_pretrained_cfg(net.arch)
    pixels = part.data.table.pixels[rows]
    _, views = network_outputs(net, pixels, pre.mean, pre.std, part.head.tta, head=part.head.name)
    if views is None or part.targets is None or not len(rows):
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
        assert pred is not None and part.targets is not None
        if split == "test" and rounds:
            groups = np.array([part.data.groups[i] for i in rows])
            out[split] = tag_scores_with_intervals(pred, part.targets[rows], part.tag_names, groups, rounds)
        else:
            out[split] = tag_scores(pred, part.targets[rows], part.tag_names)
    return out
