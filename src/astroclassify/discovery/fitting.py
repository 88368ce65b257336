"""Fit anomaly detectors to a model.

``fit_anomalies`` embeds reference images with the model and fits ``discovery.Detector``:
by default the model's own training images are the reference and its validation images set
the scales and the ``unusual`` threshold, so a bundled model carries a detector that works
offline. The images it was fitted or calibrated on are listed in ``fitted.csv`` beside it,
so ``discovery.evaluation`` can leave them out.

Datasets are named as elsewhere (a folder or collection), optionally with labels after a
colon: ``gz-decals-rings:not_ring`` is the non-ring galaxies of that collection.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from astroclassify.config import BUNDLED_ONLY, Folders
from astroclassify.errors import ConfigError, DataError, ModelError
from astroclassify.evaluation.card import write_model_card
from astroclassify.inference.chunks import in_chunks
from astroclassify.inference.detectors import Detector, fit_detector
from astroclassify.inference.embedding import add_embedding_output
from astroclassify.inference.predictor import OnnxPredictor
from astroclassify.modelfolder.folder import is_packaged, load_bundle, model_home
from astroclassify.modelfolder.versions import draft
from astroclassify.preparation.collections import resolve_data
from astroclassify.preparation.dataset import Sample, load_dataset, read_manifest, sha256_file
from astroclassify.preparation.splits import read_splits, release_key
from astroclassify.progress import Progress

__all__ = ["AnomalyFit", "embed_samples", "fit_anomalies", "fitted_hashes", "select_images", "unseen", "with_detector"]

FITTED_FILE = "fitted.csv"


# -- choosing images -------------------------------------------------------------------


def select_images(specs: str | Path | Sequence[str | Path], *, data_dir: Path | None = None) -> list[Sample]:
    """The samples of ``NAME_OR_DIR[:LABEL[,LABEL...]]`` specs, in order.

    Raises
    ------
    DataError
        A label that the dataset does not have, or nothing selected.
    """
    out: list[Sample] = []
    for spec in [specs] if isinstance(specs, str | Path) else specs:
        source, labels = _parse_spec(str(spec))
        ds = load_dataset(resolve_data(source, data_dir=data_dir))
        if labels:
            missing = set(labels) - set(ds.labels)
            if missing:
                raise DataError(
                    f"{source}: no images labelled {', '.join(sorted(missing))} (labels: {', '.join(ds.labels)})"
                )
            out += [s for s in ds.samples if s.label in labels]
        else:
            out += ds.samples
    if not out:
        raise DataError(f"no images in {', '.join(map(str, [specs] if isinstance(specs, str | Path) else specs))}")
    return out


def _parse_spec(spec: str) -> tuple[str, list[str]]:
    head, sep, tail = spec.rpartition(":")
    if sep and head and tail and "/" not in tail and "\\" not in tail:
        return head, [t.strip() for t in tail.split(",") if t.strip()]
    return spec, []


# -- embedding images --------------------------------------------------------------------


@dataclass
class Embedded:
    samples: list[Sample]
    sha256: list[str]
    logits: np.ndarray
    embeddings: np.ndarray  # raw, (n, D)
    failed: list[str] = field(default_factory=list)


def embed_samples(
    predictor: OnnxPredictor, samples: Sequence[Sample], progress: Progress | None, what: str
) -> Embedded:
    """Logits and raw embeddings of every sample that decodes (the others are listed in ``failed``)."""
    advance = progress(what, len(samples)) if progress else (lambda n=1: None)
    kept: list[Sample] = []
    failed: list[str] = []
    logits: list[np.ndarray] = []
    embeddings: list[np.ndarray] = []

    def prepare(s: Sample) -> np.ndarray:
        advance(1)
        return predictor.prepare(s.path)

    def infer(batch: np.ndarray, _: list[Sample]) -> list[tuple[np.ndarray, np.ndarray]]:
        # One view: the embedding is the unturned view's in every mode (see OnnxPredictor.forward).
        z, e = predictor.forward(batch, "none")
        assert e is not None
        return list(zip(z, e, strict=True))

    for c in in_chunks(samples, prepare, infer):
        if c.result is None:
            failed.append(f"{c.item.key}: {c.error}")
            continue
        kept.append(c.item)
        logits.append(c.result[0])
        embeddings.append(c.result[1])
    if not kept:
        raise DataError(
            f"none of the {len(samples)} image(s) could be decoded" + (f" (first: {failed[0]})" if failed else "")
        )
    return Embedded(
        kept,
        [sha256_file(s.path) for s in kept],
        np.stack(logits),
        np.stack(embeddings),
        failed,
    )


def _predictor(
    model: OnnxPredictor | str | Path, models_dir: Path | None, *, add_output: bool = False
) -> OnnxPredictor:
    predictor = (
        model if isinstance(model, OnnxPredictor) else OnnxPredictor(model, models_dir=models_dir, detector=False)
    )
    if predictor.embedding_size:
        return predictor
    if not add_output:
        raise ModelError(
            f"model {predictor.bundle.name!r} has no embedding output; run `astroclassify anomalies fit` on it first"
        )
    add_embedding_output(predictor.bundle.onnx_path)  # weights untouched: logits stay identical
    return OnnxPredictor(predictor.bundle.path, detector=False)


def with_detector(
    model: OnnxPredictor | str | Path, detector: Detector | str | Path | None, models_dir: Path | None
) -> tuple[OnnxPredictor, Detector, Path | None]:
    predictor = _predictor(model, models_dir)
    folder = None
    if isinstance(detector, Detector):
        loaded = detector
    else:
        folder = Path(detector) if detector is not None else predictor.bundle.path / "detector"
        if not (folder / "detector.json").is_file():
            raise ModelError(
                f"model {predictor.bundle.name!r} has no anomaly detector at {folder}; "
                "fit one with `astroclassify anomalies fit`"
            )
        loaded = Detector.load(folder)
    predictor.detector = loaded
    return predictor, loaded, folder


def fitted_hashes(folder: Path | None) -> set[str]:
    """SHA-256 prefixes of the images a detector was fitted or calibrated on."""
    if folder is None or not (folder / FITTED_FILE).is_file():
        return set()
    _, rows = read_manifest(folder / FITTED_FILE)
    return {row.get("sha256", "") for _, row, _ in rows} - {""}


def unseen(samples: list[Sample], fitted: set[str]) -> tuple[list[Sample], int]:
    if not fitted:
        return samples, 0
    keep = [s for s in samples if sha256_file(s.path)[:16] not in fitted]
    return keep, len(samples) - len(keep)


# -- fitting ----------------------------------------------------------------------------


@dataclass
class AnomalyFit:
    """A fitted detector and where it was written."""

    detector: Detector
    path: Path
    n_reference: int
    n_held_out: int
    held_out_unusual: float  # share of held-out typical images flagged (about the false-alarm rate)
    failed: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return (
            f"AnomalyFit({self.path}: {self.n_reference} reference, {self.n_held_out} held-out images; "
            f"{self.held_out_unusual:.1%} of held-out flagged unusual)"
        )


def fit_anomalies(
    model: str | Path,
    data: str | Path | Sequence[str | Path] | None = None,
    *,
    out: str | Path | None = None,
    held_out: float = 0.2,
    fraction: float = 1.0,
    weights: dict[str, float] | None = None,
    false_alarm_rate: float = 0.05,
    folders: Folders = BUNDLED_ONLY,
    progress: Progress | None = None,
) -> AnomalyFit:
    """Fit anomaly detectors for ``model`` and write them to ``out``.

    Parameters
    ----------
    model : str or Path
        A model name or folder. A model exported before embeddings existed gets an
        ``embedding`` output added to its ONNX graph (no weight changes).
    data : str, Path or sequence, optional
        Reference images (``NAME_OR_DIR[:LABELS]``); a seeded ``held_out`` share of their
        release groups calibrates. Default: the model's own training images, calibrated on
        its validation images.
    out : str or Path, optional
        The detector folder; default ``MODEL/detector`` (the model's own, used wherever the
        model is). A bundled model's folder is only written when given as ``out``.
    held_out : float
        With ``data``: the share of images that calibrate rather than fit.
    fraction : float
        With ``data``: use only this seeded share of the release groups, leaving the rest
        unseen for ``evaluate_anomalies`` (which leaves out what was used).
    weights : dict, optional
        Weight per detector in the combined score (default ``DEFAULT_WEIGHTS``).
    false_alarm_rate : float
        Share of typical images flagged ``unusual``.

    Returns
    -------
    AnomalyFit
    """
    if not 0 < held_out < 1:
        raise ConfigError(f"held_out must be between 0 and 1; got {held_out}")
    if not 0 < fraction <= 1:
        raise ConfigError(f"fraction must be in (0, 1]; got {fraction}")
    probe = OnnxPredictor(model, models_dir=folders.models_dir, detector=False)
    if out is None and is_packaged(probe.bundle.path):
        raise ConfigError(
            f"model {probe.bundle.name!r} is bundled and ships its detector; give --out to fit another one elsewhere"
        )
    options = {"held_out": held_out, "fraction": fraction, "weights": weights, "false_alarm_rate": false_alarm_rate}
    if out is not None:
        if not probe.embedding_size and probe.bundle.version not in ("0", "draft"):
            raise ModelError(
                f"model {probe.bundle.name!r} has no embedding output; fit its own detector first "
                "(without --out), which adds the output in a new version"
            )
        return _fit_into(probe, Path(out), data, options, folders.data_dir, progress)
    # The model's own detector is part of the model: a new version, the served one untouched until it is done.
    home, bundled = model_home(model, models_dir=folders.models_dir)
    with draft(home, made_by="anomalies", from_current=True, bundled=bundled) as d:
        own = OnnxPredictor(d.path, detector=False)
        own.bundle = dataclasses.replace(own.bundle, name=probe.bundle.name)
        fitted = _fit_into(own, d.path / "detector", data, options, folders.data_dir, progress)
    return dataclasses.replace(fitted, path=d.published / "detector")


def _fit_into(
    probe: OnnxPredictor,
    folder: Path,
    data: str | Path | Sequence[str | Path] | None,
    options: dict,
    data_dir: Path | None,
    progress: Progress | None,
) -> AnomalyFit:
    predictor = _predictor(probe, None, add_output=True)
    reference, calibration, described = _reference_images(
        predictor, data, options["held_out"], options["fraction"], data_dir
    )
    ref = embed_samples(predictor, reference, progress, "embedding reference images")
    cal = embed_samples(predictor, calibration, progress, "embedding held-out images")
    fitted = _fit_and_save(predictor, ref, cal, folder, options, described)
    if folder.resolve() == (predictor.bundle.path / "detector").resolve():  # the model's own: its card says so
        write_model_card(dataclasses.replace(load_bundle(predictor.bundle.path), name=probe.bundle.name))
    return fitted


def fit_detector_in_memory(
    predictor: OnnxPredictor,
    reference: tuple[np.ndarray, Sequence[str]],
    calibration: tuple[np.ndarray, Sequence[str]],
    folder: Path,
    *,
    described: str,
    false_alarm_rate: float = 0.05,
) -> AnomalyFit:
    """A model's own detector from images already decoded (training's): (pixels, file SHA-256s) of each side.

    What ``fit_anomalies`` does for a finished model, without reading, hashing and decoding every
    training image again; the caller writes the model's card afterwards, once.
    """
    options = {"weights": None, "false_alarm_rate": false_alarm_rate}

    def infer(batch: np.ndarray, _: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        z, e = predictor.forward(batch, "none")
        assert e is not None
        return list(zip(z, e, strict=True))

    sides = []
    for pixels, hashes in (reference, calibration):
        answers = [c.result for c in in_chunks(range(len(pixels)), pixels.__getitem__, infer) if c.result is not None]
        if not answers:
            raise DataError("no images to fit or calibrate a detector with")
        sides.append(Embedded([], list(hashes), np.stack([z for z, _ in answers]), np.stack([e for _, e in answers])))
    return _fit_and_save(predictor, sides[0], sides[1], folder, options, described)


def _fit_and_save(
    predictor: OnnxPredictor, ref: Embedded, cal: Embedded, folder: Path, options: dict, described: str
) -> AnomalyFit:
    detector = fit_detector(
        ref.embeddings,
        ref.logits.argmax(axis=1),
        cal.embeddings,
        cal.logits,
        weights=options["weights"],
        false_alarm_rate=options["false_alarm_rate"],
        meta={
            "model": predictor.bundle.name,
            "model_version": predictor.bundle.version,
            "reference": described,
            "labels": list(predictor.labels),
        },
    )
    detector.meta["id"] = _detector_id(detector)
    detector.save(folder)
    with (folder / FITTED_FILE).open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["sha256", "role"])
        writer.writerows([(h[:16], "reference") for h in ref.sha256] + [(h[:16], "held_out") for h in cal.sha256])
    flagged = float(detector.score(detector.projection.compact(cal.embeddings), cal.logits).unusual.mean())
    return AnomalyFit(detector, folder, len(ref.sha256), len(cal.sha256), flagged, ref.failed + cal.failed)


def _reference_images(
    predictor: OnnxPredictor,
    data: str | Path | Sequence[str | Path] | None,
    held_out: float,
    fraction: float,
    data_dir: Path | None,
) -> tuple[list[Sample], list[Sample], str]:
    if data is not None:
        samples = [
            s for s in select_images(data, data_dir=data_dir) if _hash_share("use\0" + release_key(s)) < fraction
        ]
        if not samples:
            raise DataError(f"no images left with fraction={fraction}")
        # Whole release groups go to one side, so near-copies do not calibrate their own twins.
        calibrate = [_hash_share(release_key(s)) < held_out for s in samples]
        ref = [s for s, c in zip(samples, calibrate, strict=True) if not c]
        cal = [s for s, c in zip(samples, calibrate, strict=True) if c]
        names = [data] if isinstance(data, str | Path) else list(data)
        used = f"{fraction:.0%} of the release groups, " if fraction < 1 else ""
        return ref, cal, f"{', '.join(map(str, names))} ({used}{1 - held_out:.0%} of those fit, the rest calibrates)"
    bundle = predictor.bundle
    splits_file = bundle.path / "splits.csv"
    sources = (bundle.meta.get("data") or {}).get("sources") or []
    if not splits_file.is_file() or not sources:
        raise ConfigError(f"model {bundle.name!r} records no training split; give the reference images with --data")
    role = {r.sha256: r.split for r in read_splits(splits_file)}
    ref, cal = [], []
    for source in sources:
        for s in load_dataset(resolve_data(source, data_dir=data_dir)).samples:
            where = role.get(sha256_file(s.path))
            if where == "train":
                ref.append(s)
            elif where == "val":
                cal.append(s)
    if not ref or not cal:
        raise DataError(f"the training images of model {bundle.name!r} ({', '.join(sources)}) were not found")
    return ref, cal, f"the model's training images ({', '.join(sources)}); its validation images calibrate"


def _hash_share(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def _detector_id(detector: Detector) -> str:
    """A short id of the projection: stored embeddings are comparable only under the same one."""
    h = hashlib.sha256(detector.projection.mean.tobytes() + detector.projection.components.tobytes())
    return h.hexdigest()[:12]
