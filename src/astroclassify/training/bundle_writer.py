"""Turn a trained torch model into a calibrated, evaluated ONNX bundle."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import platform
from pathlib import Path

import numpy as np
import torch

from astroclassify.evaluation.calibration import expected_calibration_error, fit_temperature, softmax
from astroclassify.evaluation.metrics import classification_metrics
from astroclassify.evaluation.report import write_eval_plots
from astroclassify.imaging.filters import check_filters
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
    cfg: TrainConfig, data, model: torch.nn.Module, out: Path, *, best_epoch: int, seconds: float
) -> Bundle:
    """Export ONNX, fit the temperature on validation, score the test split through ONNX."""
    pre = get_pretrained_cfg(cfg.model)
    export_onnx(model, out / "model.onnx", data.size)
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for s, sp in zip(data.table.samples, data.split, strict=True):
        counts.setdefault(s.dataset, {}).setdefault(str(sp), {}).setdefault(s.label, 0)
        counts[s.dataset][str(sp)][s.label] += 1
    bundle = Bundle(
        path=out,
        name=cfg.name or out.name,
        version=dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M"),
        arch=cfg.model,
        labels=tuple(data.labels),
        image_size=data.size,
        mean=pre.mean,
        std=pre.std,
        tta=cfg.tta,
        meta={
            "training": {
                "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "extra"},
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
        },
    )
    bundle.save()
    predictor = OnnxPredictor(bundle)
    idx = {name: np.flatnonzero(data.split == name) for name in ("val", "test")}
    logits = {
        name: predictor.logits(data.table.pixels[i], cfg.tta) if len(i) else np.zeros((0, len(data.labels)))
        for name, i in idx.items()
    }
    temperature = fit_temperature(logits["val"], data.y[idx["val"]])
    # Serving may use another TTA mode than the default (``serve --tta none`` is twice as
    # fast); averaging fewer views gives sharper logits, so each mode gets its own temperature.
    temperatures = {
        mode: temperature
        if mode == cfg.tta
        else fit_temperature(predictor.logits(data.table.pixels[idx["val"]], mode), data.y[idx["val"]])
        for mode in TTA_MODES
    }
    bundle = dataclasses.replace(bundle, temperature=temperature, meta=bundle.meta | {"temperatures": temperatures})

    metrics: dict = {"temperature_fitted_on": "val", "tta": cfg.tta}
    for name, rows in idx.items():
        if not len(rows):
            continue
        y = data.y[rows]
        probs = softmax(logits[name], temperature)
        scopes = {"all": np.ones(len(rows), bool)}
        datasets = sorted({data.table.samples[i].dataset for i in rows})
        if len(datasets) > 1:
            scopes |= {d: np.array([data.table.samples[i].dataset == d for i in rows]) for d in datasets}
        metrics[name] = {}
        for scope, mask in scopes.items():
            groups = [data.groups[i] for i in rows[mask]]  # an object's images are resampled together
            m = classification_metrics([data.labels[i] for i in y[mask]], probs[mask], data.labels, groups=groups)
            m["ece_uncalibrated"] = round(expected_calibration_error(softmax(logits[name][mask]), y[mask]), 4)
            metrics[name][scope] = m
        if name == "test":
            write_eval_plots(metrics[name]["all"], probs, y, logits[name], out, title=f"{bundle.name}: test split")
    meta = dict(bundle.meta)
    meta["metrics"] = metrics
    bundle = dataclasses.replace(bundle, meta=meta)
    bundle.save()
    log.info("temperature %.3f; test %s", temperature, {k: v["accuracy"] for k, v in metrics.get("test", {}).items()})
    return bundle


def _split_rule(cfg) -> str:
    rule = "grouped by release/object and near-duplicate pixels, stratified by dataset and label"
    if cfg.splits:  # the training seed did not make this split
        return f"{rule}; reused from `{Path(cfg.splits).name}` given with `--set splits=` (shared by ensemble members)"
    return f"{rule}, seed {cfg.seed}, test {cfg.test_frac:.0%}, val {cfg.val_frac:.0%}"
