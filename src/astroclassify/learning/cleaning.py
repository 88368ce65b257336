"""Likely label errors among gathered labels, judged by what the champion was trained on.

Each gathered image is scored by logistic regression on the champion's embeddings, fitted on
the champion's own training images alone (a simple model over a good representation, as in
confident learning). An image whose probability for its own label is under the threshold is
a suspect: kept out of training and shown for review, where a person settles it.

The new labels never teach the judge. Until issue 36 the regression also learnt from the other
folds of the new labels (out of fold); a poisoner who sends many labels then teaches it his
story: at half the labels it caught 29 % of them and doubted 27 % of honest ones, where this
rule catches 91 % and doubts 6 % (bench/poisoning.py; cleanlab's ``find_label_issues`` on
either probabilities did no better). One forward pass per image, so it runs on every turn.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from astroclassify.evaluation.label_errors import SUSPECT_THRESHOLD, doubted_labels
from astroclassify.inference.embedding import embed_images
from astroclassify.inference.predictor import OnnxPredictor
from astroclassify.learning.snapshot import LabelRow

__all__ = ["SUSPECT_THRESHOLD", "Suspect", "find_label_errors", "oof_probabilities", "trusted_probabilities"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Suspect:
    """A gathered label the judge doubts: what it says instead, and how sure."""

    row: LabelRow
    predicted: str
    confidence: float
    p_label: float


def find_label_errors(
    predictor: OnnxPredictor,
    rows: Sequence[LabelRow],
    reference: Sequence[tuple[Path, str]] = (),
    *,
    folds: int = 5,
    threshold: float = SUSPECT_THRESHOLD,
    seed: int = 0,
) -> list[Suspect]:
    """Rows whose label gets under ``threshold`` from a judge fitted on ``reference``; lowest first.

    Parameters
    ----------
    predictor : OnnxPredictor
        The champion: its embeddings are the representation.
    rows : sequence of LabelRow
        The gathered labels to check.
    reference : sequence of (path, label)
        Trusted labelled images (the champion's training split): the judge learns from these
        alone. Without two classes of them, the rows are judged out of fold among themselves.
    """
    if not rows:
        return []
    labels = list(predictor.labels)
    x_rows = embed_images(predictor, [r.path for r in rows])
    x_ref = embed_images(predictor, [p for p, _ in reference])
    y_rows = np.array([labels.index(r.label) for r in rows])
    y_ref = np.array([labels.index(lab) for _, lab in reference], dtype=int)
    if len(np.unique(y_ref)) >= 2:
        proba = trusted_probabilities(x_rows, x_ref, y_ref, len(labels))
    else:  # the champion's data is not here: the new labels must judge each other
        log.warning("no training images of the champion here: new labels are checked out of fold among themselves")
        proba = oof_probabilities(x_rows, y_rows, x_ref, y_ref, len(labels), folds=folds, seed=seed)
    return [
        Suspect(rows[d.index], labels[d.predicted], d.confidence, d.p_label)
        for d in doubted_labels(proba, y_rows, threshold=threshold)
    ]


def _regression():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced"))


def oof_probabilities(
    x_rows: np.ndarray,
    y_rows: np.ndarray,
    x_ref: np.ndarray,
    y_ref: np.ndarray,
    n_classes: int,
    *,
    folds: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """Each row's class probabilities from a regression fitted on the reference and the *other* folds of the rows."""
    proba = np.zeros((len(y_rows), n_classes))
    fold = np.random.default_rng(seed).permutation(len(y_rows)) % max(2, min(folds, len(y_rows)))
    for f in np.unique(fold):
        fit = fold != f
        x = np.concatenate([x_ref, x_rows[fit]])
        y = np.concatenate([y_ref, y_rows[fit]])
        if len(np.unique(y)) < 2:  # nothing to contrast with: no evidence against any label
            proba[fold == f, y_rows[fold == f]] = 1.0
            continue
        clf = _regression().fit(x, y)
        proba[np.ix_(fold == f, clf.classes_)] = clf.predict_proba(x_rows[fold == f])
    return proba


def trusted_probabilities(x_rows: np.ndarray, x_ref: np.ndarray, y_ref: np.ndarray, n_classes: int) -> np.ndarray:
    """Each row's class probabilities from a regression fitted on the reference alone (new labels never judge)."""
    proba = np.zeros((len(x_rows), n_classes))
    if len(np.unique(y_ref)) < 2:
        return np.full((len(x_rows), n_classes), 1.0 / n_classes)
    clf = _regression().fit(x_ref, y_ref)
    proba[:, clf.classes_] = clf.predict_proba(x_rows)
    return proba
