"""Measure anomaly detectors honestly.

``evaluate_anomalies`` scores typical ("in") against unusual ("out") images and
``simulate_marks`` plays an astronomer marking the top of the ranking. Both leave out every
image the detector was fitted or calibrated on (``fitted.csv`` beside it), as ``evaluate``
leaves out a model's training images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from astroclassify.config import BUNDLED_ONLY, Folders
from astroclassify.discovery.fitting import embed_samples, fitted_hashes, select_images, unseen, with_detector
from astroclassify.discovery.ranking import rerank
from astroclassify.errors import ConfigError, DataError
from astroclassify.inference.detectors import DETECTORS, Detector
from astroclassify.progress import Progress

__all__ = ["AnomalyEvaluation", "Simulation", "evaluate_anomalies", "simulate_marks"]

PRECISION_AT = (10, 20, 50)

# -- evaluation --------------------------------------------------------------------------


@dataclass
class AnomalyEvaluation:
    """How well the anomaly score separates "out" from "in" images (``metrics``: the ``--json`` shape)."""

    metrics: dict
    scores: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    is_out: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=bool))
    keys: list[str] = field(repr=False, default_factory=list)

    def __repr__(self) -> str:
        m = self.metrics
        lo, hi = m["auroc_ci"]
        return (
            f"AnomalyEvaluation(n_in={m['n_in']}, n_out={m['n_out']}: AUROC {m['auroc']:.3f} [{lo:.2f}, {hi:.2f}], "
            f"FPR@95%TPR {m['fpr_at_95_tpr']:.3f}, precision@20 {m['precision_at_k']['20']:.2f})"
        )


def evaluate_anomalies(
    model: str | Path,
    in_data: str | Path | Sequence[str | Path],
    out_data: str | Path | Sequence[str | Path],
    *,
    detector: Detector | str | Path | None = None,
    folders: Folders = BUNDLED_ONLY,
    progress: Progress | None = None,
) -> AnomalyEvaluation:
    """Score typical (``in_data``) against unusual (``out_data``) images, never fitted ones.

    Returns
    -------
    AnomalyEvaluation
        ``metrics``: ``n_in``, ``n_out``, ``auroc`` (with ``auroc_ci``, a 95% bootstrap
        interval), ``fpr_at_95_tpr``, ``precision_at_k`` (k = 10, 20, 50), ``unusual_rate``
        (in and out), the same per detector under ``detectors``, and what was left out.
    """
    predictor, det, folder = with_detector(model, detector, folders.models_dir)
    fitted = fitted_hashes(folder)
    ins, skipped_in = unseen(select_images(in_data, data_dir=folders.data_dir), fitted)
    outs, skipped_out = unseen(select_images(out_data, data_dir=folders.data_dir), fitted)
    if not ins or not outs:
        raise DataError(
            f"nothing to score: {len(ins)} 'in' and {len(outs)} 'out' image(s) left after leaving out "
            f"{skipped_in + skipped_out} the detector was fitted on"
        )
    a = embed_samples(predictor, ins, progress, "scoring 'in' images")
    b = embed_samples(predictor, outs, progress, "scoring 'out' images")
    compact = det.projection.compact(np.concatenate([a.embeddings, b.embeddings]))
    logits = np.concatenate([a.logits, b.logits])
    scores = det.score(compact, logits)
    y = np.r_[np.zeros(len(a.samples), bool), np.ones(len(b.samples), bool)]
    metrics: dict = {"n_in": int((~y).sum()), "n_out": int(y.sum())}
    metrics |= _separation(scores.anomaly_score, y)
    metrics["auroc_ci"] = _auroc_interval(scores.anomaly_score, y)
    metrics["unusual_rate"] = {"in": float(scores.unusual[~y].mean()), "out": float(scores.unusual[y].mean())}
    metrics["detectors"] = {name: _separation(z, y) for name, z in scores.detectors.items() if name in DETECTORS}
    metrics["weights"] = det.weights
    metrics["false_alarm_rate"] = det.false_alarm_rate
    metrics["in"] = [str(d) for d in ([in_data] if isinstance(in_data, str | Path) else in_data)]
    metrics["out"] = [str(d) for d in ([out_data] if isinstance(out_data, str | Path) else out_data)]
    metrics["model"] = f"{predictor.bundle.name} {predictor.bundle.version}"
    metrics["detector"] = str(folder) if folder else "given"
    metrics["excluded_fitted"] = skipped_in + skipped_out
    metrics["failed"] = a.failed + b.failed
    return AnomalyEvaluation(metrics, scores.anomaly_score, y, [s.key for s in a.samples + b.samples])


def _separation(score: np.ndarray, y: np.ndarray) -> dict:
    from sklearn.metrics import roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(y, score)
    order = np.argsort(-score, kind="stable")
    return {
        "auroc": round(float(roc_auc_score(y, score)), 4),
        "fpr_at_95_tpr": round(float(fpr[np.searchsorted(tpr, 0.95)]), 4),
        "precision_at_k": {str(k): round(float(y[order[:k]].mean()), 4) for k in PRECISION_AT if k <= len(y)},
    }


def _auroc_interval(score: np.ndarray, y: np.ndarray, n: int = 1000) -> list[float]:
    """95% bootstrap interval, resampling "in" and "out" images separately."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    values = []
    for _ in range(n):
        idx = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        values.append(roc_auc_score(y[idx], score[idx]))
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]


# -- simulated active learning ----------------------------------------------------------


@dataclass
class Simulation:
    """An astronomer's marking rounds replayed with known labels (``metrics``: the ``--json`` shape)."""

    metrics: dict

    def __repr__(self) -> str:
        m = self.metrics
        return (
            f"Simulation({m['marks']} marks in {m['rounds']} rounds, {m['found']} interesting: "
            f"AUROC {m['auroc_before']:.3f} -> {m['auroc_after']:.3f}, "
            f"precision@20 {m['precision_at_20_before']:.2f} -> {m['precision_at_20_after']:.2f})"
        )


def simulate_marks(
    model: str | Path,
    pool: str | Path | Sequence[str | Path],
    target: str | Sequence[str],
    *,
    marks: int = 30,
    rounds: int = 3,
    seed: int = 0,
    detector: Detector | str | Path | None = None,
    folders: Folders = BUNDLED_ONLY,
    progress: Progress | None = None,
) -> Simulation:
    """Replay active learning: each round marks the top-ranked unmarked images, then re-ranks.

    An image is marked interesting when its label is ``target``. ``precision_at_20_after``
    counts the top 20 of the final ranking, where marked images keep their marks (what the
    person sees at the top of the list); ``*_unmarked`` figures rank only what was not marked.
    ``seed`` breaks ties in the first ranking.
    """
    if rounds < 1 or marks < rounds:
        raise ConfigError(f"need at least one mark per round; got {marks} marks in {rounds} rounds")
    targets = {target} if isinstance(target, str) else set(target)
    predictor, det, folder = with_detector(model, detector, folders.models_dir)
    samples, skipped = unseen(select_images(pool, data_dir=folders.data_dir), fitted_hashes(folder))
    labels = {s.label for s in samples}
    if not targets & labels:
        raise DataError(
            f"no image in the pool is labelled {', '.join(sorted(targets))} (labels: {', '.join(sorted(labels))})"
        )
    emb = embed_samples(predictor, samples, progress, "scoring the pool")
    compact = det.projection.compact(emb.embeddings)
    base = det.score(compact, emb.logits).anomaly_score
    base = base + np.random.default_rng(seed).random(len(base)) * 1e-9  # ties broken by the seed
    y = np.array([s.label in targets for s in emb.samples])
    marked: dict[int, bool] = {}
    score = base
    per_round = [marks // rounds + (1 if r < marks % rounds else 0) for r in range(rounds)]
    for n in per_round:
        for i in [int(i) for i in np.argsort(-score, kind="stable") if int(i) not in marked][:n]:
            marked[i] = bool(y[i])
        score = rerank(compact, base, marked)
    unmarked = np.array([i not in marked for i in range(len(y))])
    before, after = _separation(base, y), _separation(score, y)
    metrics = {
        "auroc_before": before["auroc"],
        "auroc_after": after["auroc"],
        "precision_at_20_before": before["precision_at_k"].get("20", float("nan")),
        "precision_at_20_after": after["precision_at_k"].get("20", float("nan")),
        "marks": len(marked),
        "rounds": rounds,
        "found": int(sum(marked.values())),
        "n_pool": len(y),
        "n_target": int(y.sum()),
        "auroc_after_unmarked": _separation(score[unmarked], y[unmarked])["auroc"] if y[unmarked].any() else None,
        "precision_at_20_after_unmarked": _separation(score[unmarked], y[unmarked])["precision_at_k"].get("20"),
        "target": sorted(targets),
        "excluded_fitted": skipped,
        "model": f"{predictor.bundle.name} {predictor.bundle.version}",
        "seed": seed,
    }
    return Simulation(metrics)
