"""The frozen gold set and the paired comparison that decides a promotion.

The gold set is fixed when the loop first runs for a model: the champion's held-out test
split (grouped by object, seeded), written to ``learn/gold.csv`` and never changed. Every
challenger keeps those images in its test split, so it never trains or tunes on them, and
champion and challenger answer the same images. The decision uses a paired bootstrap over
the gold set's groups (both models resampled together), so the interval is of the
difference itself, far narrower than two separate intervals.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from astroclassify.errors import DataError
from astroclassify.evaluation.metrics import group_resamples
from astroclassify.preparation.splits import Fingerprint, SplitAssignment, fingerprint, read_splits, write_splits

if TYPE_CHECKING:
    from astroclassify.preparation.copies import CropIndex

__all__ = ["Comparison", "compare_paired", "ensure_gold", "gold_labels"]

LEVEL = 0.95


def ensure_gold(learn_dir: Path, champion: Path) -> list[SplitAssignment]:
    """The gold set: ``learn_dir/gold.csv``, made once from the champion's test split."""
    gold = learn_dir / "gold.csv"
    if gold.is_file():
        return read_splits(gold)
    rows = [r for r in read_splits(champion / "splits.csv") if r.split == "test"]
    if not rows:
        raise DataError(f"{champion}: its split has no test images to freeze as the gold set")
    learn_dir.mkdir(parents=True, exist_ok=True)
    write_splits(gold, rows)
    return rows


def gold_labels(home: Path) -> dict[str, str]:
    """Every gold image of a model home by its file's SHA-256: the frozen split and what people settled."""
    from astroclassify.learning.review import settled_labels

    gold = home / "learn" / "gold.csv"
    frozen = {r.sha256: r.label for r in read_splits(gold)} if gold.is_file() else {}
    return frozen | settled_labels(home)


GOLD_PRINTS = "gold-prints.npz"


def image_print(path: Path) -> Fingerprint | None:
    """The fingerprint of an image file (decoded under the default limits), or None if it cannot be read."""
    from astroclassify.errors import AstroClassifyError
    from astroclassify.imaging.decode import decode_pil

    try:
        return fingerprint(decode_pil(path).convert("RGB"))
    except (AstroClassifyError, OSError):
        return None


def gold_fingerprints(learn_dir: Path, files: Sequence[tuple[str, Path]]) -> tuple[list[Fingerprint], int]:
    """Fingerprints of the gold images (by file SHA-256 and path), and how many could not be read.

    Kept in ``learn_dir/gold-prints.npz`` (plain arrays, no pickle), so each gold image is decoded
    once: a turn then checks every new label against the gold set by pixels, not only by bytes.
    """
    cache = learn_dir / GOLD_PRINTS
    known: dict[str, Fingerprint] = {}
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                for sha, pix, thumb, detail in zip(z["sha256"], z["pixels"], z["thumb"], z["detail"], strict=True):
                    known[str(sha)] = Fingerprint(str(pix), thumb, detail)
        except (OSError, ValueError, KeyError):
            known = {}
    missing = 0
    changed = False
    for sha, path in files:
        if sha in known:
            continue
        found = image_print(path) if path.is_file() else None
        if found is None:
            missing += 1
            continue
        known[sha] = found
        changed = True
    if changed and known:
        shas = sorted(known)
        _save(
            cache,
            sha256=np.array(shas),
            pixels=np.array([known[s].pixels_sha for s in shas]),
            thumb=np.stack([known[s].thumb for s in shas]),
            detail=np.stack([known[s].detail for s in shas]),
        )
    wanted = {sha for sha, _ in files}
    return [known[s] for s in sorted(wanted) if s in known], missing


def _save(cache: Path, **arrays: np.ndarray) -> None:
    """Write plain arrays (no pickle) to ``cache`` through a temporary file, so a reader never sees half."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, cache)


GOLD_KEYPOINTS = "gold-keypoints.npz"


def gold_keypoints(learn_dir: Path, files: Sequence[tuple[str, Path]]) -> CropIndex:
    """A ``CropIndex`` of the held-out images (by file SHA-256 and path), each described once.

    Kept in ``learn_dir/gold-keypoints.npz`` (plain arrays, no pickle) beside the fingerprints.
    """
    from astroclassify.errors import AstroClassifyError
    from astroclassify.imaging.decode import decode_pil
    from astroclassify.preparation.copies import CropIndex, keypoints

    cache = learn_dir / GOLD_KEYPOINTS
    known: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                shas, counts, points, descriptors = z["sha256"], z["counts"], z["points"], z["descriptors"]
            bounds = np.concatenate([[0], np.cumsum(counts)])
            for i, sha in enumerate(shas):
                known[str(sha)] = (points[bounds[i] : bounds[i + 1]], descriptors[bounds[i] : bounds[i + 1]])
        except (OSError, ValueError, KeyError):
            known = {}
    changed = False
    for sha, path in files:
        if sha in known or not path.is_file():
            continue
        try:
            known[sha] = keypoints(decode_pil(path).convert("RGB"))
        except (AstroClassifyError, OSError):
            continue
        changed = True
    if changed:
        shas = sorted(known)
        _save(
            cache,
            sha256=np.array(shas),
            counts=np.array([len(known[s][1]) for s in shas], int),
            points=np.concatenate([known[s][0] for s in shas] or [np.zeros((0, 2), np.float32)]),
            descriptors=np.concatenate([known[s][1] for s in shas] or [np.zeros((0, 32), np.uint8)]),
        )
    wanted = sorted({sha for sha, _ in files} & set(known))
    return CropIndex.of([known[s] for s in wanted])


def _recall(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    out = np.full(k, np.nan)
    for c in range(k):
        have = y == c
        if have.any():
            out[c] = float((pred[have] == c).mean())
    return out


def _macro_f1(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    f1s = []
    for c in range(k):
        tp = float(((pred == c) & (y == c)).sum())
        support, predicted = float((y == c).sum()), float((pred == c).sum())
        if support:
            f1s.append(2 * tp / (support + predicted) if support + predicted else 0.0)
    return float(np.mean(f1s)) if f1s else float("nan")


@dataclass(frozen=True)
class Comparison:
    """Champion against challenger on the same gold images, with paired 95% intervals of the differences."""

    n: int
    champion_macro_f1: float
    challenger_macro_f1: float
    difference: float
    difference_ci: tuple[float, float]
    recall: dict[str, dict[str, float | list[float]]] = field(default_factory=dict)  # per class
    promote: bool = False
    reason: str = ""
    validation: dict[str, float] = field(default_factory=dict)  # both models on the validation split

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "champion_macro_f1": round(self.champion_macro_f1, 4),
            "challenger_macro_f1": round(self.challenger_macro_f1, 4),
            "difference": round(self.difference, 4),
            "difference_ci": [round(v, 4) for v in self.difference_ci],
            "recall": self.recall,
            "validation": self.validation,
            "promote": self.promote,
            "reason": self.reason,
        }


VALIDATION_TOLERANCE = 0.01  # macro-F1 a challenger may lose on validation (noise of a few images)


def _fallen(y: np.ndarray, a: np.ndarray, b: np.ndarray, labels: Sequence[str]) -> list[str]:
    """Classes whose recall falls by more than one of their images from champion ``a`` to challenger ``b``."""
    k = len(labels)
    r_a, r_b = _recall(y, a, k), _recall(y, b, k)
    out = []
    for c, label in enumerate(labels):
        n = int((y == c).sum())
        if n and r_b[c] < r_a[c] - 1.0 / n - 1e-9:
            out.append(label)
    return out


def compare_paired(
    y: Sequence[int],
    champion: np.ndarray,
    challenger: np.ndarray,
    groups: Sequence[str],
    labels: Sequence[str],
    *,
    validation: tuple[Sequence[int], np.ndarray, np.ndarray] | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Promote only a challenger better on gold that got worse nowhere it can be seen.

    Promoted when (1) the paired interval of the gold macro-F1 difference lies above zero,
    (2) no class's gold recall falls beyond its own interval or by more than one of its
    images, and, given ``validation`` (labels and both models' probabilities on the
    validation split), (3) validation macro-F1 falls by no more than ``VALIDATION_TOLERANCE``
    and (4) no class's validation recall falls by more than one image. The gold split is
    public: a poisoner can train altered copies of it (they are searched for, see
    ``preparation/copies.py``), so gold alone must never be what a promotion rests on.

    ``champion`` and ``challenger`` are (N, K) probabilities on the same rows, in ``labels`` order.
    """
    y_arr = np.asarray(y)
    k = len(labels)
    a, b = champion.argmax(1), challenger.argmax(1)
    f_a, f_b = _macro_f1(y_arr, a, k), _macro_f1(y_arr, b, k)
    diffs, recall_diffs = [], []
    for rows in group_resamples(groups, n_resamples, seed):
        diffs.append(_macro_f1(y_arr[rows], b[rows], k) - _macro_f1(y_arr[rows], a[rows], k))
        recall_diffs.append(_recall(y_arr[rows], b[rows], k) - _recall(y_arr[rows], a[rows], k))
    lo, hi = (float(v) for v in np.percentile(diffs, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2]))
    rd = np.array(recall_diffs)
    r_a, r_b = _recall(y_arr, a, k), _recall(y_arr, b, k)
    recall: dict[str, dict[str, float | list[float]]] = {}
    losers = []
    for c, label in enumerate(labels):
        if np.isnan(r_a[c]):
            continue
        col = rd[:, c][~np.isnan(rd[:, c])]
        ci = [float(np.percentile(col, 2.5)), float(np.percentile(col, 97.5))] if len(col) else [0.0, 0.0]
        recall[label] = {
            "champion": round(float(r_a[c]), 4),
            "challenger": round(float(r_b[c]), 4),
            "difference_ci": [round(v, 4) for v in ci],
        }
        if ci[1] < 0:
            losers.append(label)
    losers += [c for c in _fallen(y_arr, a, b, labels) if c not in losers]
    diff = f_b - f_a
    checked: dict[str, float] = {}
    val_losers: list[str] = []
    if validation is not None and len(validation[0]):
        y_val = np.asarray(validation[0])
        va, vb = validation[1].argmax(1), validation[2].argmax(1)
        checked = {
            "n": int(len(y_val)),
            "champion_macro_f1": round(_macro_f1(y_val, va, k), 4),
            "challenger_macro_f1": round(_macro_f1(y_val, vb, k), 4),
        }
        val_losers = _fallen(y_val, va, vb, labels)
    if losers:
        reason = f"{', '.join(losers)} recall falls on gold (beyond its interval or by more than one image)"
    elif lo <= 0:
        reason = f"macro-F1 difference {diff:+.3f} [{lo:+.3f}, {hi:+.3f}]: the interval does not lie above zero"
    elif checked and checked["challenger_macro_f1"] < checked["champion_macro_f1"] - VALIDATION_TOLERANCE:
        reason = (
            f"gold macro-F1 {f_a:.3f} -> {f_b:.3f}, but validation macro-F1 falls "
            f"{checked['champion_macro_f1']:.3f} -> {checked['challenger_macro_f1']:.3f}"
        )
    elif val_losers:
        reason = f"gold macro-F1 {f_a:.3f} -> {f_b:.3f}, but {', '.join(val_losers)} recall falls on validation"
    else:
        reason = f"macro-F1 {f_a:.3f} -> {f_b:.3f}, difference {diff:+.3f} [{lo:+.3f}, {hi:+.3f}] above zero"
        if checked:
            reason += f"; validation {checked['champion_macro_f1']:.3f} -> {checked['challenger_macro_f1']:.3f}"
    promote = reason.startswith("macro-F1 ") and lo > 0
    return Comparison(len(y_arr), f_a, f_b, diff, (lo, hi), recall, promote, reason, checked)
