"""Anomaly detectors over a model's embeddings, combined into one calibrated score.

An embedding is L2-normalised and projected on the principal axes of the reference images
(the model's training images by default). What the axes leave over, the *residual*, is
where images unlike the reference differ most: a planet seen by a galaxy model lands
off the galaxies' subspace. So every image is kept as ``k`` coordinates plus the residual
norm (``compact``, 65 numbers by default), and every detector works on that:

- ``knn``: distance to the k-th nearest reference image, ``|c - c_r|^2 + r^2 + r_r^2``
  (the full-space distance when residuals are orthogonal);
- ``mahalanobis``: class-conditional, shared Ledoit-Wolf covariance in the coordinates,
  plus the residual over its reference mean (probabilistic PCA's two terms);
- ``isolation_forest``: scikit-learn's, scored by vectorised path lengths (its own
  ``score_samples`` loops over trees in Python: 10 ms for one image);

Everything a score needs is stored as arrays, so scoring needs NumPy alone (no SciPy or
scikit-learn import on the serving path).
- ``energy``: ``-logsumexp(logits)`` (Liu et al. 2020), from the classifier alone.

Each raw score is standardised on held-out in-distribution images (median and IQR), the
standardised scores are averaged with ``weights``, and the average is mapped through its
empirical distribution on those held-out images (with slowly closing tails, so strong
anomalies stay ranked). ``anomaly_score`` is then the share of typical images that look
less unusual, and ``unusual`` (score above ``1 - false_alarm_rate``) flags about that
share of typical images by construction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from astroclassify.errors import ModelError

__all__ = [
    "DEFAULT_WEIGHTS",
    "DETECTORS",
    "AnomalyScores",
    "Detector",
    "Projection",
    "fit_detector",
]

DETECTORS = ("knn", "mahalanobis", "isolation_forest", "energy")
# Chosen on development data of three tasks (planets for a Hubble galaxy/nebula model, gz1
# mergers, DECaLS rings), never on the images the figures are reported on: kNN led on its
# own; half an isolation forest added 0.009 mean AUROC; Mahalanobis and energy lowered it.
# All four are still scored and reported (docs/benchmarks.md, "Anomalies").
DEFAULT_WEIGHTS: dict[str, float] = {"knn": 1.0, "mahalanobis": 0.0, "isolation_forest": 0.5, "energy": 0.0}
DETECTOR_FORMAT = 1
KNN_K = 5
COMPONENTS = 64
FOREST_TREES = 100


@dataclass(frozen=True)
class Projection:
    """Principal axes of the reference embeddings: ``compact`` gives coordinates + residual norm."""

    mean: np.ndarray  # (D,)
    components: np.ndarray  # (k, D), orthonormal rows

    @classmethod
    def fit(cls, embeddings: np.ndarray, k: int = COMPONENTS) -> Projection:
        from sklearn.decomposition import PCA

        x = _unit(embeddings)
        k = max(1, min(k, x.shape[0] - 1, x.shape[1]))
        pca = PCA(k, random_state=0).fit(x)
        # Rounded as they are stored (float16), so a detector scores the same before and after saving.
        return cls(pca.mean_.astype(np.float32), pca.components_.astype(np.float16).astype(np.float32))

    @property
    def size(self) -> int:
        return int(self.components.shape[0]) + 1

    def compact(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, k + 1) float32: coordinates on the axes, then the norm of what they leave over."""
        x = _unit(embeddings) - self.mean
        coords = x @ self.components.T
        residual = np.sqrt(np.maximum((x * x).sum(axis=1) - (coords * coords).sum(axis=1), 0.0))
        return np.hstack([coords, residual[:, None]]).astype(np.float32)


@dataclass(frozen=True)
class AnomalyScores:
    """Per image: the combined score in [0, 1], the flag, and each detector's standardised score."""

    anomaly_score: np.ndarray
    unusual: np.ndarray
    detectors: dict[str, np.ndarray]


@dataclass
class Detector:
    """Fitted detectors for one model; ``score`` maps compact embeddings (and logits) to anomaly scores."""

    projection: Projection
    reference: np.ndarray  # (n, k + 1) compact reference embeddings
    reference_labels: np.ndarray  # (n,) class index per reference image (for Mahalanobis)
    forest: _Forest
    mahalanobis: _Mahalanobis
    location: dict[str, float]  # per detector: median raw score on held-out typical images
    scale: dict[str, float]  # per detector: IQR / 1.349 there
    calibration: np.ndarray  # sorted combined scores of the held-out typical images
    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    false_alarm_rate: float = 0.05
    meta: dict = field(default_factory=dict)

    @property
    def threshold(self) -> float:
        """``anomaly_score`` at or above this is ``unusual``."""
        return 1.0 - self.false_alarm_rate

    def raw(self, compact: np.ndarray, logits: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Each detector's raw score (higher: more unusual); ``energy`` needs the logits."""
        compact = np.asarray(compact, dtype=np.float32)
        out = {
            "knn": _knn_distance(self.reference, compact, KNN_K),
            "mahalanobis": self.mahalanobis.score(compact),
            "isolation_forest": self.forest.score(compact),
        }
        if logits is not None:
            out["energy"] = -_logsumexp(np.asarray(logits, dtype=np.float64))
        return out

    def combine(self, raw: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Weighted mean of the standardised scores (detectors without a raw score are left out)."""
        z = {name: (raw[name] - self.location[name]) / self.scale[name] for name in raw if name in self.location}
        used = {name: w for name, w in self.weights.items() if w > 0 and name in z}
        if not used:
            raise ModelError("no detector with a positive weight has a score (energy needs the logits)")
        total = sum(used.values())
        combined = np.zeros(len(next(iter(z.values()))))
        for name, w in used.items():
            combined += w * z[name] / total
        return combined, z

    def score(self, compact: np.ndarray, logits: np.ndarray | None = None) -> AnomalyScores:
        combined, z = self.combine(self.raw(compact, logits))
        score = _calibrated(combined, self.calibration)
        return AnomalyScores(score, score >= self.threshold, z)

    # -- files -------------------------------------------------------------------------

    def save(self, folder: Path) -> Path:
        """Write ``detector.json`` and ``detector.npz`` into ``folder`` (float16 reference)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {
            "mean": self.projection.mean,
            "components": self.projection.components.astype(np.float16),
            "reference": self.reference.astype(np.float16),
            "reference_labels": self.reference_labels.astype(np.int16),
            "calibration": self.calibration.astype(np.float64),
            **self.forest.arrays(),
            "maha_means": self.mahalanobis.means,
            "maha_whiten": self.mahalanobis.whiten,
            "maha_residual_scale": np.array(self.mahalanobis.residual_scale),
        }
        np.savez_compressed(folder / "detector.npz", allow_pickle=False, **arrays)
        info = {
            "format": DETECTOR_FORMAT,
            "weights": self.weights,
            "false_alarm_rate": self.false_alarm_rate,
            "location": self.location,
            "scale": self.scale,
            **self.meta,
        }
        (folder / "detector.json").write_text(json.dumps(info, indent=1) + "\n")
        return folder

    @classmethod
    def load(cls, folder: Path) -> Detector:
        folder = Path(folder)
        try:
            info = json.loads((folder / "detector.json").read_text())
            with np.load(folder / "detector.npz") as z:
                arrays = {k: z[k] for k in z.files}
            if info.get("format") != DETECTOR_FORMAT:
                raise ValueError(f"format {info.get('format')} (this version reads {DETECTOR_FORMAT})")
            meta = {
                k: v for k, v in info.items() if k not in ("format", "weights", "false_alarm_rate", "location", "scale")
            }
            return cls(
                projection=Projection(arrays["mean"].astype(np.float32), arrays["components"].astype(np.float32)),
                reference=arrays["reference"].astype(np.float32),
                reference_labels=arrays["reference_labels"].astype(np.int64),
                forest=_Forest.from_arrays(arrays),
                mahalanobis=_Mahalanobis(
                    arrays["maha_means"].astype(np.float32),
                    arrays["maha_whiten"].astype(np.float32),
                    float(arrays["maha_residual_scale"]),
                ),
                location={k: float(v) for k, v in info["location"].items()},
                scale={k: float(v) for k, v in info["scale"].items()},
                calibration=arrays["calibration"].astype(np.float64),
                weights={k: float(v) for k, v in info["weights"].items()},
                false_alarm_rate=float(info["false_alarm_rate"]),
                meta=meta,
            )
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"{folder}: not a readable anomaly detector ({exc})") from None


def fit_detector(
    reference: np.ndarray,
    reference_labels: Sequence[int] | np.ndarray,
    held_out: np.ndarray,
    held_out_logits: np.ndarray | None = None,
    *,
    projection: Projection | None = None,
    weights: Mapping[str, float] | None = None,
    false_alarm_rate: float = 0.05,
    meta: Mapping | None = None,
) -> Detector:
    """Fit the detectors on ``reference`` embeddings and calibrate them on ``held_out`` ones.

    Parameters
    ----------
    reference : ndarray, (n, D)
        Raw embeddings of typical images (by default the model's training images).
    reference_labels : sequence of int
        Class index per reference image (true labels, or the model's predictions).
    held_out : ndarray, (m, D)
        Raw embeddings of other typical images, never in ``reference``: they set each
        score's scale and the ``unusual`` threshold. At least 20.
    held_out_logits : ndarray, (m, K), optional
        Their logits, so that ``energy`` can be standardised too.
    projection : Projection, optional
        Reuse these axes (a model's own), so stored compact embeddings stay comparable.
    weights : mapping, optional
        Weight per detector in the combined score (default ``DEFAULT_WEIGHTS``).
    false_alarm_rate : float
        Share of typical images to flag as ``unusual`` (0.05: 5%).
    """
    if len(held_out) < 20:
        raise ModelError(f"calibrating a detector needs at least 20 held-out typical images; got {len(held_out)}")
    if not 0 < false_alarm_rate < 1:
        raise ModelError(f"false_alarm_rate must be between 0 and 1; got {false_alarm_rate}")
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    unknown = set(weights) - set(DETECTORS)
    if unknown:
        raise ModelError(f"unknown detectors {sorted(unknown)}; known: {', '.join(DETECTORS)}")
    projection = projection or Projection.fit(reference)
    ref = projection.compact(reference).astype(np.float16).astype(np.float32)  # fit on what is stored
    labels = np.asarray(reference_labels, dtype=np.int64)
    detector = Detector(
        projection=projection,
        reference=ref,
        reference_labels=labels,
        forest=_Forest.fit(ref),
        mahalanobis=_Mahalanobis.fit(ref, labels),
        location={},
        scale={},
        calibration=np.zeros(0),
        weights=weights,
        false_alarm_rate=false_alarm_rate,
        meta=dict(meta or {}),
    )
    raw = detector.raw(projection.compact(held_out), held_out_logits)
    for name, values in raw.items():
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        detector.location[name] = float(median)
        detector.scale[name] = float(max((q3 - q1) / 1.349, 1e-6))
    combined, _ = detector.combine(raw)
    detector.calibration = np.sort(combined)
    detector.meta |= {"n_reference": len(ref), "n_held_out": len(held_out)}
    return detector


# -- the detectors ----------------------------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _logsumexp(z: np.ndarray) -> np.ndarray:
    m = z.max(axis=1)
    return m + np.log(np.exp(z - m[:, None]).sum(axis=1))


def _knn_distance(reference: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    """Squared distance to the k-th nearest reference point; coordinates and residual apart."""
    rc, rr = reference[:, :-1], reference[:, -1]
    xc, xr = x[:, :-1], x[:, -1]
    d2 = (xc * xc).sum(1)[:, None] - 2 * xc @ rc.T + (rc * rc).sum(1)[None] + (xr * xr)[:, None] + (rr * rr)[None]
    k = min(k, len(reference))
    return np.partition(d2, k - 1, axis=1)[:, k - 1]


@dataclass
class _Mahalanobis:
    means: np.ndarray  # (classes, k)
    whiten: np.ndarray  # (k, k): L with L L^T = precision
    residual_scale: float

    @classmethod
    def fit(cls, reference: np.ndarray, labels: np.ndarray) -> _Mahalanobis:
        from sklearn.covariance import LedoitWolf

        coords, residual = reference[:, :-1], reference[:, -1]
        classes = np.unique(labels)
        means = np.array([coords[labels == c].mean(axis=0) for c in classes])
        centred = coords - means[np.searchsorted(classes, labels)]
        precision = LedoitWolf().fit(centred).precision_
        whiten = np.linalg.cholesky((precision + precision.T) / 2)
        return cls((means @ whiten).astype(np.float32), whiten.astype(np.float32), float((residual**2).mean()) + 1e-12)

    def score(self, x: np.ndarray) -> np.ndarray:
        w = x[:, :-1] @ self.whiten  # one projection, then distances to the whitened class means
        d2 = ((w[:, None, :] - self.means[None]) ** 2).sum(axis=2).min(axis=1)
        return d2 + x[:, -1] ** 2 / self.residual_scale


@dataclass
class _Forest:
    """An isolation forest as arrays: every tree walked at once, one level per step."""

    feature: np.ndarray  # (trees, nodes) int, -1 at leaves
    threshold: np.ndarray  # (trees, nodes)
    left: np.ndarray
    right: np.ndarray
    leaf_depth: np.ndarray  # (trees, nodes): depth + c(n_samples) at leaves
    max_samples: int

    @classmethod
    def fit(cls, x: np.ndarray, trees: int = FOREST_TREES) -> _Forest:
        from sklearn.ensemble import IsolationForest

        forest = IsolationForest(n_estimators=trees, random_state=0).fit(x)
        nodes = max(e.tree_.node_count for e in forest.estimators_)
        shape = (len(forest.estimators_), nodes)
        feature = np.full(shape, -1, dtype=np.int32)
        threshold = np.zeros(shape, dtype=np.float32)
        left = np.zeros(shape, dtype=np.int32)
        right = np.zeros(shape, dtype=np.int32)
        leaf_depth = np.zeros(shape, dtype=np.float32)
        for t, (est, columns) in enumerate(zip(forest.estimators_, forest.estimators_features_, strict=True)):
            tree = est.tree_
            n = tree.node_count
            is_leaf = tree.children_left == -1
            feature[t, :n] = np.where(is_leaf, -1, np.asarray(columns)[np.maximum(tree.feature, 0)])
            threshold[t, :n] = tree.threshold
            left[t, :n] = np.where(is_leaf, 0, tree.children_left)
            right[t, :n] = np.where(is_leaf, 0, tree.children_right)
            depth = np.zeros(n)
            for node in range(n):  # children come after their parent in sklearn's arrays
                if not is_leaf[node]:
                    depth[tree.children_left[node]] = depth[tree.children_right[node]] = depth[node] + 1
            leaf_depth[t, :n] = depth + _average_path(tree.n_node_samples)
        return cls(feature, threshold, left, right, leaf_depth, int(forest.max_samples_))

    def score(self, x: np.ndarray) -> np.ndarray:
        """``2 ** (-E[h(x)] / c(n))``: near 1 for anomalies, as in Liu et al. 2008."""
        trees = np.arange(self.feature.shape[0])[:, None]
        node = np.zeros((self.feature.shape[0], len(x)), dtype=np.int64)
        for _ in range(64):
            f = self.feature[trees, node]
            inner = f >= 0
            if not inner.any():
                break
            value = x[np.arange(len(x))[None, :], np.maximum(f, 0)]
            go_left = value <= self.threshold[trees, node]
            node = np.where(inner, np.where(go_left, self.left[trees, node], self.right[trees, node]), node)
        depth = self.leaf_depth[trees, node].mean(axis=0)
        return 2.0 ** (-depth / _average_path(np.array([self.max_samples]))[0])

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "forest_feature": self.feature.astype(np.int16),
            "forest_threshold": self.threshold,
            "forest_left": self.left.astype(np.int16),
            "forest_right": self.right.astype(np.int16),
            "forest_leaf_depth": self.leaf_depth.astype(np.float32),
            "forest_max_samples": np.array(self.max_samples),
        }

    @classmethod
    def from_arrays(cls, a: Mapping[str, np.ndarray]) -> _Forest:
        return cls(
            a["forest_feature"].astype(np.int32),
            a["forest_threshold"].astype(np.float32),
            a["forest_left"].astype(np.int32),
            a["forest_right"].astype(np.int32),
            a["forest_leaf_depth"].astype(np.float32),
            int(a["forest_max_samples"]),
        )


def _average_path(n: np.ndarray) -> np.ndarray:
    """c(n): the mean path length of an unsuccessful search in a binary tree of n points."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def _calibrated(combined: np.ndarray, calibration: np.ndarray) -> np.ndarray:
    """The share of held-out typical images below each score, with hyperbolic tails past them.

    Inside the calibration range this is the interpolated empirical CDF; beyond it, the
    score keeps rising towards 1 (falling towards 0) with the gap, in units of the spread
    of the outermost tenth. The tail is ``1/(1 + gap)`` rather than exponential, so that
    even very strong anomalies stay ordered among themselves in float64.
    """
    c = np.asarray(calibration, dtype=np.float64)
    n = len(c)
    ranks = np.arange(1, n + 1) / (n + 1)
    tail = max(n // 10, 2)
    hi_scale = max(c[-1] - c[-tail], 1e-6)
    lo_scale = max(c[tail - 1] - c[0], 1e-6)
    s = np.asarray(combined, dtype=np.float64)
    out = np.interp(s, c, ranks)
    above, below = s > c[-1], s < c[0]
    out[above] = 1.0 - (1.0 / (n + 1)) / (1.0 + (s[above] - c[-1]) / hi_scale)
    out[below] = (1.0 / (n + 1)) / (1.0 + (c[0] - s[below]) / lo_scale)
    return out
