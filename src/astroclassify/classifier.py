"""The estimator-style public API: ``astroclassify.load("dso").predict(["m51.jpg"])``."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from astroclassify.errors import DataError, ImageDecodeError, NotFittedError

if TYPE_CHECKING:
    from astroclassify.inference.predictor import Explanation, OnnxPredictor, Outcome

__all__ = ["Classifier", "FailedPrediction", "Prediction"]

# What predict takes: a sequence of images, or one image alone (a path, its bytes, an RGB array).
Inputs = Sequence[str | Path | bytes | np.ndarray] | str | Path | bytes | np.ndarray


@dataclass(frozen=True)
class Prediction:
    """One image's calibrated prediction."""

    source: str
    label: str
    confidence: float
    probabilities: dict[str, float]
    anomaly_score: float | None = None  # in [0, 1]: the share of typical images less unusual (None: no detector)
    unusual: bool | None = None  # over the detector's threshold (5% of typical images by default)
    # Soft and multi-label outputs of a model with tag heads: tag -> probability or predicted
    # vote fraction (``morphology``: ring, featured_or_disk, ...); empty for a model without.
    tags: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.source,
            "label": self.label,
            "confidence": round(self.confidence, 6),
            "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()},
            "anomaly_score": None if self.anomaly_score is None else round(self.anomaly_score, 6),
            "unusual": self.unusual,
            "tags": {k: round(v, 6) for k, v in self.tags.items()},
        }


@dataclass(frozen=True)
class FailedPrediction:
    """An input ``predict_iter`` could not classify, and why (corrupt, truncated, over a limit, not an image)."""

    source: str
    error: str

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.source, "error": self.error}


class Classifier:
    """Train or load an image classifier and predict with calibrated confidence.

    Parameters
    ----------
    model : str, default="efficientnet_lite0"
        Registry architecture used by ``fit``.
    taxonomy : str, optional
        A label mapping ``fit`` trains through: a built-in name (``astroclassify taxonomies``)
        or a YAML file; e.g. ``gz1-coarse`` merges the two spiral directions.
    **train_options
        Any ``TrainConfig`` field, e.g. ``epochs=5``.

    Parameters are also ``get_params``/``set_params``, so scikit-learn's ``clone`` works.

    Examples
    --------
    >>> import astroclassify
    >>> clf = astroclassify.load("dso")
    >>> clf.classes_
    ('galaxy', 'nebula', 'planet')
    """

    def __init__(self, *, model: str = "efficientnet_lite0", taxonomy: str | None = None, **train_options: Any) -> None:
        self.model = model
        self.taxonomy = taxonomy
        self.train_options = train_options

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments (scikit-learn's estimator protocol)."""
        return {"model": self.model, "taxonomy": self.taxonomy, **self.train_options}

    def set_params(self, **params: Any) -> Classifier:
        """Change constructor arguments; a fitted model is kept until the next ``fit``."""
        for key, value in params.items():
            if key in ("model", "taxonomy"):
                setattr(self, key, value)
            else:
                self.train_options[key] = value
        return self

    @property
    def predictor(self) -> OnnxPredictor:
        """The ONNX Runtime predictor behind this classifier: what ``ingest``, ``watch`` and discovery take."""
        self._check_fitted()
        return self.predictor_

    def __repr__(self) -> str:
        if hasattr(self, "predictor_"):
            b = self.predictor_.bundle
            return f"Classifier({b.name!r} {b.version}, classes={list(self.classes_)}, tta={b.tta!r})"
        options = "".join(f", {k}={v!r}" for k, v in self.train_options.items())
        return f"Classifier(model={self.model!r}, taxonomy={self.taxonomy!r}{options}) (not fitted)"

    @classmethod
    def load(
        cls, name_or_path: str | Path = "dso", *, detector: str | Path | None = None, **predictor_options: Any
    ) -> Classifier:
        """A fitted classifier from a bundled model's name, a model folder, or a name in ``models_dir=``.

        ``predictor_options``: ``models_dir``, ``limits``, ``threads`` (see
        ``OnnxPredictor``). ``astroclassify.load`` fills them from the installation.
        """
        from astroclassify.inference.predictor import OnnxPredictor

        return cls.from_predictor(OnnxPredictor(name_or_path, detector=detector, **predictor_options))

    @classmethod
    def from_predictor(cls, predictor: OnnxPredictor) -> Classifier:
        """A fitted classifier around a loaded predictor (the CLI and the web app make theirs with the installation's limits)."""
        clf = cls(model=predictor.bundle.arch)
        clf._set_fitted(predictor)
        return clf

    def _set_fitted(self, predictor: OnnxPredictor) -> None:
        self.predictor_ = predictor
        self.bundle_ = predictor.bundle
        self.classes_ = predictor.labels

    def fit(self, X: Sequence[str | Path], y: Sequence[str], *, out: str | Path | None = None) -> Classifier:
        """Train on image paths ``X`` with labels ``y`` (needs the ``train`` extra)."""
        from astroclassify.inference.predictor import OnnxPredictor

        try:
            from astroclassify.training.config import TrainConfig
            from astroclassify.training.train import train
        except ImportError as exc:
            from astroclassify.errors import missing_extra

            raise (missing_extra(exc) or exc) from None

        if len(X) != len(y):
            raise DataError(f"X has {len(X)} items but y has {len(y)} labels")
        with tempfile.TemporaryDirectory(prefix="astroclassify-fit-") as tmp:
            root = Path(tmp) / "data"
            (root / "img").mkdir(parents=True)
            lines = ["file,label"]
            for i, (path, label) in enumerate(zip(X, y, strict=True)):
                link = root / "img" / f"{i:06d}{Path(path).suffix.lower()}"
                link.symlink_to(Path(path).resolve())
                lines.append(f"img/{link.name},{label}")
            (root / "manifest.csv").write_text("\n".join(lines) + "\n")
            out_dir = Path(out) if out else Path(tempfile.mkdtemp(prefix="astroclassify-model-"))
            cfg = TrainConfig(
                data=(str(root),),
                out=str(out_dir),
                model=self.model,
                taxonomy=self.taxonomy or "",
                **self.train_options,
            )
            train(cfg)
        self._set_fitted(OnnxPredictor(out_dir))
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "predictor_"):
            raise NotFittedError("this Classifier is not fitted; call fit(X, y) or Classifier.load(name)")

    def predict_proba(self, X: Inputs, *, tta: str | None = None) -> np.ndarray:
        """Calibrated class probabilities.

        Parameters
        ----------
        X : sequence of path, bytes or array
            Image files, encoded image bytes, or decoded RGB arrays (H, W, 3); one path,
            bytes or array alone is one input.
        tta : {"none", "rot4", "rot4flip"}, optional
            Test-time augmentation; default: the model's own mode (chosen by CV).

        Returns
        -------
        numpy.ndarray
            Shape (n, n_classes), columns in ``classes_`` order; each row sums to 1.

        Raises
        ------
        ImageDecodeError
            If an input cannot be decoded (corrupt, truncated, over the pixel limit).
        """
        self._check_fitted()
        batch = np.stack([self.predictor_.prepare(x) for x in _inputs(X)])
        return self.predictor_.predict_proba(batch, tta)

    def predict(self, X: Inputs, *, tta: str | None = None) -> list[Prediction]:
        """Typed predictions, one per input, in input order: ``label``, calibrated ``confidence``
        and every class's ``probabilities`` (``X`` and ``tta`` as for ``predict_proba``).

        Raises ``ImageDecodeError`` naming an input that cannot be decoded; ``predict_iter``
        gives such an input a ``FailedPrediction`` of its own instead.
        """
        self._check_fitted()
        results = []
        for outcome in self.predictor_.run(_inputs(X), tta=tta):
            if outcome.error is not None or outcome.probabilities is None:
                raise ImageDecodeError(f"{outcome.source}: {outcome.error}")
            results.append(to_prediction(outcome, self.classes_))
        return results

    def predict_iter(
        self, X: Inputs, *, batch_size: int = 16, tta: str | None = None
    ) -> Iterator[Prediction | FailedPrediction]:
        """Predictions as they come, in input order: a ``Prediction``, or a ``FailedPrediction`` for an input that failed.

        For many files (a folder, an archive): decoding overlaps inference, memory holds one
        batch, and one bad file costs its own row rather than the run. ``predict`` raises on
        the first bad input instead.
        """
        self._check_fitted()
        for outcome in self.predictor_.run(_inputs(X), batch_size=batch_size, tta=tta):
            if outcome.error is not None or outcome.probabilities is None:
                yield FailedPrediction(outcome.source, str(outcome.error))
            else:
                yield to_prediction(outcome, self.classes_)

    def explain(self, source: str | Path | bytes, label: str | None = None, *, tta: str | None = None) -> Explanation:
        """Grad-CAM for one image, averaged over the same TTA views as the prediction.

        Parameters
        ----------
        source : path or bytes
            The image.
        label : str, optional
            The class to explain; default: the predicted one.
        tta : {"none", "rot4", "rot4flip"}, optional
            Default: the model's own mode.

        Returns
        -------
        Explanation
            ``label``, ``probabilities``, ``heatmap`` (0-1, model input size) and ``overlay()``.

        Raises
        ------
        ModelError
            If the model was exported without Grad-CAM maps.
        UnknownNameError
            If ``label`` is not one of the model's classes.

        Examples
        --------
        >>> clf.explain("m51.jpg").overlay(clf.bundle_.image_size).save("m51-gradcam.png")  # doctest: +SKIP
        """
        self._check_fitted()
        return self.predictor_.explain(source, label, tta)


def to_prediction(outcome: Outcome, labels: Sequence[str]) -> Prediction:
    """A predictor's outcome for one image (probabilities known) as the public ``Prediction``."""
    probs = outcome.probabilities
    assert probs is not None
    best = int(np.argmax(probs))
    return Prediction(
        source=outcome.source,
        label=labels[best],
        confidence=float(probs[best]),
        probabilities={label: float(p) for label, p in zip(labels, probs, strict=True)},
        anomaly_score=outcome.anomaly_score,
        unusual=outcome.unusual,
        tags=dict(outcome.tags or {}),
    )


def _inputs(X: Inputs) -> list:
    """The inputs of ``X``: one path, bytes or (H, W[, C]) array is one input, not a sequence to iterate
    (``predict("m51.jpg")`` iterated over characters and said ``/: is a directory``)."""
    if isinstance(X, str | Path | bytes | bytearray | memoryview):
        return [X]
    if isinstance(X, np.ndarray) and X.ndim in (2, 3) and (X.ndim == 2 or X.shape[-1] in (1, 3, 4)):
        return [X]
    return list(X)
