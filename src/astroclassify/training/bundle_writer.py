"""A trained torch model as a graph and its ``model.json`` in a draft version, then finished (``modelfolder.finish``)."""

from __future__ import annotations

import logging
import platform
from pathlib import Path

import numpy as np
import torch

from astroclassify.evaluation.calibration import expected_calibration_error, softmax
from astroclassify.evaluation.finish import Scored, finish, fit_temperatures
from astroclassify.evaluation.metrics import classification_metrics
from astroclassify.imaging.filters import check_filters
from astroclassify.imaging.framing import Framing
from astroclassify.imaging.stretch import FitsDisplay
from astroclassify.imaging.tta import TTA_MODES
from astroclassify.inference.predictor import OnnxPredictor
from astroclassify.modelfolder.folder import Bundle
from astroclassify.models import get_pretrained_cfg
from astroclassify.training.config import TrainConfig
from astroclassify.training.export import export_onnx

__all__ = ["finish_bundle"]

log = logging.getLogger(__name__)


def finish_bundle(
    cfg: TrainConfig,
    data,
    model: torch.nn.Module,
    out: Path,
    *,
    name: str,
    best_epoch: int,
    seconds: float,
    extra_meta: dict | None = None,
    card: bool = True,
) -> Bundle:
    """Export ONNX with the model's classes and preprocessing into ``out`` (a draft version), then finish it.

    Validation and test images are already decoded in memory, so they are scored from there
    through the exported graph rather than read again, and the model's own anomaly detector is
    fitted from them too (training images as reference, validation ones calibrating) before the
    card is written, once (``card=False``: the caller writes it after adding to the model).
    """
    pre = get_pretrained_cfg(cfg.model)
    export_onnx(model, out / "model.onnx", data.size)
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for s, sp in zip(data.table.samples, data.split, strict=True):
        counts.setdefault(s.dataset, {}).setdefault(str(sp), {}).setdefault(s.label, 0)
        counts[s.dataset][str(sp)][s.label] += 1
    bundle = Bundle(
        path=out,
        name=name,
        version="draft",  # a version is named by its content when it is published
        arch=cfg.model,
        labels=tuple(data.labels),
        image_size=data.size,
        mean=pre.mean,
        std=pre.std,
        tta=cfg.tta,
        meta={
            "training": {
                "config": cfg.recipe(),
                "command": cfg.extra.get("command", ""),
                "pretrained": pre.source if cfg.pretrained else "none (from scratch)",
                "best_epoch": best_epoch,
                "seconds": round(seconds),
                "torch": torch.__version__,
                "cpu": platform.processor() or platform.machine(),
                "threads": torch.get_num_threads(),
            },
            "explainable": hasattr(model, "head_gradient"),
            "crop": cfg.crop,
            "framing": Framing(cfg.framing, cfg.framing_scale).to_dict(),  # done again at inference
            "decode": {"draft": "letterbox"},  # how training decoded its JPEGs (see imaging/decode.py)
            # What training did to the pixels, done again at inference (imaging/stretch.py, filters.py).
            "fits": FitsDisplay(cfg.fits_stretch, cfg.fits_interval).to_dict(),
            "filters": list(check_filters(cfg.filters.split(","))),
            "taxonomy": data.taxonomy.to_json() if data.taxonomy else None,
            "data": {
                "sources": list(cfg.data),
                "counts": counts,
                "near_duplicate_pairs": len(data.near_duplicates),
                "label_conflicts": [list(p) for p in data.label_conflicts],
                "undecodable": data.table.failed,
                "left_out_by_taxonomy": data.left_out_labels,
                "manifest_problems": data.manifest_problems,
                "split_rule": _split_rule(cfg),
            },
        }
        | (extra_meta or {}),
    )
    bundle.save()
    predictor = OnnxPredictor(bundle)
    idx = {name: np.flatnonzero(data.split == name) for name in ("val", "test")}
    val_pixels, y_val = data.table.pixels[idx["val"]], data.y[idx["val"]]
    val_logits = {mode: predictor.logits(val_pixels, mode) for mode in TTA_MODES}
    bundle = fit_temperatures(bundle, val_logits, y_val)
    scored = {"val": _scored(data, idx["val"], val_logits[cfg.tta], bundle.temperature)}
    if len(idx["test"]):
        test_logits = predictor.logits(data.table.pixels[idx["test"]], cfg.tta)
        scored["test"] = _scored(data, idx["test"], test_logits, bundle.temperature)
    val = {scope: s.metrics for scope, s in scored["val"].items()}
    _own_detector(predictor, data, out, cfg)
    bundle = finish(
        bundle,
        scored.get("test", {}),
        metrics={"temperature_fitted_on": "val", "tta": cfg.tta} | ({"val": val} if val else {}),
        card=card,
    )
    log.info(
        "temperature %.3f; test %s",
        bundle.temperature,
        {k: v.metrics["accuracy"] for k, v in scored.get("test", {}).items()},
    )
    return bundle


def _own_detector(predictor: OnnxPredictor, data, out: Path, cfg: TrainConfig) -> None:
    """The model's anomaly detector from the decoded training (reference) and validation (calibration) images."""
    from astroclassify.discovery.fitting import fit_detector_in_memory
    from astroclassify.errors import AstroClassifyError

    sides = []
    for split in ("train", "val"):
        rows = np.flatnonzero(data.split == split)
        sides.append((data.table.pixels[rows], [data.table.sha256[i] for i in rows]))
    described = f"the model's training images ({', '.join(map(str, cfg.data))}); its validation images calibrate"
    try:
        fitted = fit_detector_in_memory(predictor, sides[0], sides[1], out / "detector", described=described)
        log.info("%r", fitted)
    except AstroClassifyError as exc:  # too few validation images, say: the model works without one
        log.warning("no anomaly detector for this model: %s", exc)


def _scored(data, rows: np.ndarray, logits: np.ndarray, temperature: float) -> dict[str, Scored]:
    """A split's scores over all its rows and, with several datasets, each dataset's rows alone."""
    if not len(rows):
        return {}
    y = data.y[rows]
    probs = softmax(logits, temperature)
    scopes = {"all": np.ones(len(rows), bool)}
    datasets = sorted({data.table.samples[i].dataset for i in rows})
    if len(datasets) > 1:
        scopes |= {d: np.array([data.table.samples[i].dataset == d for i in rows]) for d in datasets}
    out = {}
    for scope, mask in scopes.items():
        groups = [data.groups[i] for i in rows[mask]]  # an object's images are resampled together
        m = classification_metrics([data.labels[i] for i in y[mask]], probs[mask], data.labels, groups=groups)
        m["ece_uncalibrated"] = round(expected_calibration_error(softmax(logits[mask]), y[mask]), 4)
        out[scope] = Scored(m, probs[mask], y[mask], logits[mask])
    return out


def _split_rule(cfg) -> str:
    rule = "grouped by release/object and near-duplicate pixels, stratified by dataset and label"
    if cfg.splits:  # the training seed did not make this split
        return f"{rule}; reused from `{Path(cfg.splits).name}` (`splits=`), so it is scored on the same held-out images as the models that share that file"
    return f"{rule}, seed {cfg.seed}, test {cfg.test_frac:.0%}, val {cfg.val_frac:.0%}"
