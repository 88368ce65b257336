"""Score a model on labelled datasets, honestly.

By default only images the model never trained or tuned on are scored: when a dataset
took part in training (its files' SHA-256 appear in the model's ``splits.csv``), only its
``test`` rows count; other datasets count whole. Images with labels the model does not
know, and files that cannot be decoded, are reported rather than silently dropped.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from astroclassify.config import BUNDLED_ONLY, Folders
from astroclassify.errors import ConfigError, DataError
from astroclassify.evaluation.calibration import expected_calibration_error, softmax
from astroclassify.evaluation.metrics import classification_metrics, with_interval
from astroclassify.imaging.tta import resolve_tta
from astroclassify.inference.predictor import OnnxPredictor
from astroclassify.modelfolder.folder import Bundle
from astroclassify.preparation.collections import resolve_data
from astroclassify.preparation.dataset import Sample, load_dataset, sha256_file
from astroclassify.preparation.splits import read_splits
from astroclassify.preparation.taxonomy import Taxonomy
from astroclassify.progress import Progress

__all__ = ["EvalResult", "Evaluation", "evaluate"]

log = logging.getLogger(__name__)

SPLITS = ("auto", "test", "val", "train", "all")


@dataclass
class Evaluation:
    """A model scored on labelled data: ``metrics`` (the ``evaluate --json`` contract) and the rows scored.

    Examples
    --------
    >>> ev = astroclassify.evaluate("dso", ["hubble-dso"])  # doctest: +SKIP
    >>> ev
    Evaluation(dso on hubble-dso (auto split): n=75, accuracy 0.907 [0.82, 0.97], macro-F1 ...)
    """

    metrics: dict
    keys: list[str] = field(default_factory=list)
    y_true: list[str] = field(default_factory=list)
    probs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    logits: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # before temperature scaling
    paths: list[Path] = field(default_factory=list)
    bundle: Bundle | None = None

    @property
    def title(self) -> str:
        m = self.metrics
        return f"{self.bundle.name if self.bundle else m.get('model', '?')} on {', '.join(map(str, m['data']))} ({m['split']} split)"

    def __repr__(self) -> str:
        m, ci = self.metrics, self.metrics.get("ci", {})
        return (
            f"Evaluation({self.title}: n={m['n']}, accuracy {with_interval(m['accuracy'], ci.get('accuracy'))}, "
            f"macro-F1 {with_interval(m['macro_f1'], ci.get('macro_f1'))})"
        )

    def to_dict(self) -> dict:
        """The JSON-ready metrics (what ``astroclassify evaluate --json`` prints)."""
        return self.metrics

    @property
    def problems(self) -> list[str]:
        """One line per input that was not scored: manifest rows, unreadable files, unknown labels."""
        m = self.metrics
        model = self.bundle.name if self.bundle else m.get("model", "?")
        lines = list(m["manifest_problems"]) + list(m["failed"])
        lines += [
            f"{n} image(s) labelled {label!r}, a label model {model!r} does not know; not scored"
            for label, n in m["unknown_labels"].items()
        ]
        return lines

    def report_dir(self, fallback: Path | None = None) -> Path:
        """Where ``write_report`` writes by default: beside a user's model, never inside the package or a version.

        A bundled (or read-only) model's report goes to ``fallback`` (the CLI passes
        ``$ASTROCLASSIFY_HOME/reports/NAME``), else to ``./NAME-report``.
        """
        from astroclassify.modelfolder.folder import is_packaged

        b = self.bundle
        name = b.name if b else "model"
        if b is None or is_packaged(b.path) or not os.access(b.path, os.W_OK):
            return fallback or Path(f"{name}-report")
        if b.path.parent.name == "versions":  # a version never changes: its reports go beside the versions
            return b.path.parent.parent / "evaluation" / b.path.name
        return b.path / "evaluation"  # a subfolder keeps the training-time test plots intact

    def write_report(self, out: str | Path | None = None, *, fallback: Path | None = None) -> Path:
        """An HTML report with plots, named for the datasets and split; returns its path.

        Parameters
        ----------
        out : Path, optional
            Folder to write to (default: ``report_dir(fallback)``).
        """
        from astroclassify.evaluation.report import write_html_report

        target = Path(out) if out is not None else self.report_dir(fallback)
        target.mkdir(parents=True, exist_ok=True)
        m = self.metrics
        datasets = "+".join(Path(str(d)).name or str(d) for d in m["data"])
        name = "report-" + re.sub(r"[^A-Za-z0-9_.+-]+", "_", datasets) + f"-{m['split']}"
        return write_html_report(
            m, self.keys, self.y_true, self.probs, target, title=self.title, name=name, paths=self.paths
        )


EvalResult = Evaluation  # the name before 0.2


def _taxonomy(bundle: Bundle, name: str | None) -> Taxonomy | None:
    from astroclassify.preparation.taxonomy import Taxonomy, load_taxonomy

    if name:
        return load_taxonomy(name)
    stored = bundle.meta.get("taxonomy")
    return Taxonomy.from_dict(stored, f"{bundle.name}/model.json") if stored else None


def evaluate(
    model: OnnxPredictor | Bundle | str | Path,
    data: str | Path | Sequence[str | Path],
    *,
    split: str = "auto",
    tta: str | None = None,
    taxonomy: str | None = None,
    folders: Folders = BUNDLED_ONLY,
    progress: Progress | None = None,
) -> Evaluation:
    """Score ``model`` on dataset folders or collection names, honestly.

    Parameters
    ----------
    model : OnnxPredictor, Bundle, str or Path
        A loaded predictor, or a model to load (a bundled name, a user model's name, a folder).
    data : str, Path or a sequence of them
        A dataset folder or collection name, or several.
    split : {"auto", "test", "val", "train", "all"}, default="auto"
        ``auto``: a dataset the model trained on is scored on its held-out test rows only;
        other datasets are scored whole.
    tta : str, optional
        Test-time augmentation (default: the model's own).
    taxonomy : str, optional
        Map dataset labels with this taxonomy (default: the one the model was trained with).
    folders : Folders, optional
        Where model names and collection names are looked up (an installation's ``folders()``).

    Returns
    -------
    Evaluation
        Metrics with 95% intervals, and the rows scored.

    Raises
    ------
    DataError
        Nothing is left to score (every image seen in training, or no known label).

    Dataset labels go through ``taxonomy`` (a name or YAML file), else through the taxonomy
    the model was trained with, so a six-label dataset scores a four-class model. When the
    taxonomy is coarser than the model (its classes take in the model's classes, as
    ``gz1-coarse`` takes spiral_cw and spiral_acw into spiral), the model's probabilities
    are summed into the coarse classes; mass on model classes the taxonomy leaves out is
    dropped and the rest renormalised.
    """
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    predictor = model if isinstance(model, OnnxPredictor) else OnnxPredictor(model, models_dir=folders.models_dir)
    sources = [data] if isinstance(data, str | Path) else list(data)
    bundle = predictor.bundle
    space = _LabelSpace.of(bundle, taxonomy)
    rows = _select(sources, bundle, space, split, folders.data_dir)
    scored = _score(predictor, rows, tta, progress)
    temperature = bundle.temperature_for(tta)
    probs = space.collapse(softmax(scored.logits, temperature))
    metrics = classification_metrics(scored.y_true, probs, space.labels, groups=scored.groups)
    y_idx = np.array([space.labels.index(t) for t in scored.y_true], dtype=int)
    metrics["ece_uncalibrated"] = round(expected_calibration_error(space.collapse(softmax(scored.logits)), y_idx), 4)
    metrics |= {
        "temperature": temperature,
        "tta": resolve_tta(tta, bundle.tta),
        "model": f"{bundle.name} {bundle.version}",
        "data": [str(d) for d in sources],
        "split": split,
        "excluded_seen_in_training": dict(rows.excluded),
        "unknown_labels": dict(rows.unknown),
        "taxonomy": space.mapping.name if space.mapping else None,
        "collapsed_from": list(space.model_labels) if space.matrix is not None else None,
        "left_out_by_taxonomy": dict(rows.left_out),
        "failed": scored.failed,
        "manifest_problems": rows.problems,
    }
    return Evaluation(metrics, scored.keys, scored.y_true, probs, scored.logits, scored.paths, bundle)


@dataclass
class _LabelSpace:
    """The classes scored: the model's, or a coarser taxonomy's that its probabilities are summed into."""

    labels: list[str]
    model_labels: list[str]
    mapping: Taxonomy | None
    matrix: np.ndarray | None  # (model classes, scored classes); None: scored as the model's classes

    @classmethod
    def of(cls, bundle: Bundle, taxonomy: str | None) -> _LabelSpace:
        mapping = _taxonomy(bundle, taxonomy)
        model_labels = list(bundle.labels)
        if mapping is None or set(mapping.labels) == set(model_labels):
            return cls(model_labels, model_labels, mapping, None)
        targets = [mapping.map_label(m) for m in model_labels]
        labels = [t for t in mapping.labels if t in targets]
        if not labels:
            raise ConfigError(
                f"taxonomy {mapping.name} maps none of model {bundle.name!r}'s classes ({', '.join(model_labels)})"
            )
        return cls(labels, model_labels, mapping, np.array([[float(t == c) for c in labels] for t in targets]))

    def collapse(self, probs: np.ndarray) -> np.ndarray:
        """Model probabilities in the scored classes (mass on classes the taxonomy drops is renormalised away)."""
        if self.matrix is None or not len(probs):
            return probs
        coarse = probs @ self.matrix
        return coarse / np.maximum(coarse.sum(axis=1, keepdims=True), 1e-12)


@dataclass
class _Rows:
    """The samples chosen to score, with their groups, and why the others were not."""

    samples: list[Sample] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    excluded: Counter[str] = field(default_factory=Counter)  # by the split they belong to
    unknown: Counter[str] = field(default_factory=Counter)  # labels the model does not know
    left_out: Counter[str] = field(default_factory=Counter)  # labels the taxonomy drops
    problems: list[str] = field(default_factory=list)  # manifest rows that could not be read


def _select(sources: list[str | Path], bundle: Bundle, space: _LabelSpace, split: str, data_dir: Path | None) -> _Rows:
    """The rows to score: a dataset the model trained on gives only its ``split`` rows (auto: test)."""
    splits_file = bundle.path / "splits.csv"
    split_rows = read_splits(splits_file) if splits_file.is_file() else []
    known_split = {r.sha256: r.split for r in split_rows}
    known_group = {r.sha256: r.group for r in split_rows}
    rows = _Rows()
    for source in sources:
        ds = load_dataset(resolve_data(source, data_dir=data_dir))
        rows.problems += [f"{ds.name}: {p}" for p in ds.problems]
        if space.mapping is not None:
            ds.samples, dropped = space.mapping.apply(ds.samples)
            rows.left_out.update(dropped)
        shas = [sha256_file(s.path) for s in ds.samples]
        trained_on = any(h in known_split for h in shas)
        want = split if split != "auto" else ("test" if trained_on else "all")
        if want != "all" and not known_split:
            raise ConfigError(
                f"model {bundle.name!r} has no splits.csv, so --split {want} is undefined; use --split all"
            )
        for s, h in zip(ds.samples, shas, strict=True):
            where = known_split.get(h, "unseen")
            if want != "all" and where != want:
                rows.excluded[where] += 1
            elif s.label not in space.labels:
                rows.unknown[s.label] += 1
            else:
                rows.samples.append(s)
                rows.groups.append(known_group.get(h, f"image:{h}"))
    if not rows.samples:
        raise DataError(
            _nothing_to_score(bundle.name, split, rows.excluded, rows.unknown, rows.left_out, rows.problems)
        )
    return rows


@dataclass
class _Scored:
    keys: list[str]
    y_true: list[str]
    logits: np.ndarray
    groups: list[str]
    paths: list[Path]
    failed: list[str]  # "key: why" for each file that could not be decoded


def _score(predictor: OnnxPredictor, rows: _Rows, tta: str | None, progress: Progress | None) -> _Scored:
    """Logits for every chosen row that decodes; the others are listed in ``failed``."""
    out = _Scored([], [], np.zeros(0), [], [], [])
    logits = []
    advance = progress("evaluating", len(rows.samples)) if progress else (lambda n=1: None)
    outcomes = predictor.run([s.path for s in rows.samples], batch_size=32, tta=tta)
    for sample, group, outcome in zip(rows.samples, rows.groups, outcomes, strict=True):
        advance(1)
        if outcome.error is not None:
            out.failed.append(f"{sample.key}: {outcome.error}")
            continue
        out.groups.append(group)
        out.paths.append(sample.path)
        out.keys.append(sample.key)
        out.y_true.append(sample.label)
        logits.append(outcome.logits)
    if not logits:
        raise DataError(
            f"nothing to score: none of the {len(rows.samples)} image(s) could be decoded (first: {out.failed[0]})"
        )
    out.logits = np.array(logits)
    return out


def _nothing_to_score(
    model: str, split: str, excluded: Counter, unknown: Counter, left_out: Counter, problems: list[str]
) -> str:
    """Why no image is left to score, in one line that says what to do."""
    why = []
    if excluded:
        seen = ", ".join(f"{n} in its {where} split" for where, n in sorted(excluded.items()))
        why.append(f"{sum(excluded.values())} image(s) excluded by --split {split} ({seen})")
    if unknown:
        why.append(f"labels model {model!r} does not know: {dict(unknown)}")
    if left_out:
        why.append(f"labels the taxonomy leaves out: {dict(left_out)}")
    if problems:
        why.append(f"{len(problems)} manifest problem(s), first: {problems[0]}")
    hint = (
        "; score images the model never trained on, or pass --taxonomy to map the labels" if excluded or unknown else ""
    )
    return f"nothing to score for model {model!r}: " + ("; ".join(why) or "the datasets are empty") + hint
