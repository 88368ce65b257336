"""Prepare datasets for training and splitting: load, map labels, decode once, group, split.

Small astronomy datasets fit in RAM at network resolution (5665 x 160² x 3 = 435 MB), and
decoding once instead of every epoch is what makes CPU training practical here. Splitting
needs the same decode (near-duplicate groups come from pixels), so ``astroclassify data
split`` and ``train`` share ``prepare_data`` and write the same ``splits.csv``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from astroclassify.errors import ConfigError, DataError, ImageDecodeError
from astroclassify.imaging.decode import decode_pil
from astroclassify.imaging.filters import letterbox_filtered
from astroclassify.imaging.framing import NO_FRAMING, Framing, framed
from astroclassify.imaging.stretch import FitsDisplay
from astroclassify.preparation.collections import DEFAULT_TAXONOMY, resolve_data
from astroclassify.preparation.dataset import Sample, load_dataset, sha256_file
from astroclassify.preparation.splits import (
    Fingerprint,
    SplitAssignment,
    assign_groups,
    fingerprint,
    make_splits_and_folds,
    read_splits,
    write_splits,
)
from astroclassify.preparation.taxonomy import Taxonomy, load_taxonomy
from astroclassify.progress import Progress, silent

__all__ = [
    "ImageTable",
    "PreparedData",
    "SplitResult",
    "build_table",
    "prepare_data",
    "resolve_taxonomy",
    "split_datasets",
    "write_split_file",
]

log = logging.getLogger(__name__)

FINGERPRINT_SIZE = 128


@dataclass
class ImageTable:
    samples: list[Sample]
    pixels: np.ndarray  # (N, S, S, 3) uint8, letterboxed
    fingerprints: list[Fingerprint]
    sha256: list[str]
    failed: list[str]  # "key: reason" for samples that could not be decoded


def build_table(
    samples: list[Sample],
    size: int,
    progress=None,
    crop: float = 1.0,
    fits_display: FitsDisplay | None = None,
    filters: Sequence[str] = (),
    framing: Framing = NO_FRAMING,
) -> ImageTable:
    kept: list[Sample] = []
    pixels: list[np.ndarray] = []
    prints: list[Fingerprint] = []
    shas: list[str] = []
    failed: list[str] = []
    for sample in samples:
        try:
            # The same decode, crop and resize as inference (OnnxPredictor.prepare).
            # At least FINGERPRINT_SIZE px, so near-duplicate checks do not depend on the network size.
            draft = max(math.ceil(size / crop) * (1 if framing.method == "none" else 2), FINGERPRINT_SIZE)
            full = decode_pil(sample.path, draft_size=draft, fits_display=fits_display)
            img, _ = framed(full, framing, crop)
        except ImageDecodeError as exc:
            failed.append(f"{sample.key}: {str(exc).split(': ', 1)[-1]}")
        else:
            kept.append(sample)
            pixels.append(letterbox_filtered(img, size, filters))
            # Duplicates are judged on the whole image: in centred survey cutouts the central crop
            # of two different compact galaxies can look alike, while their fields of stars differ.
            prints.append(fingerprint(full))
            shas.append(sha256_file(sample.path))
        if progress:
            progress()
    for line in failed:
        log.warning("skipped %s", line)
    arr = np.stack(pixels) if pixels else np.zeros((0, size, size, 3), np.uint8)
    return ImageTable(kept, arr, prints, shas, failed)


@dataclass
class PreparedData:
    table: ImageTable
    labels: list[str]
    y: np.ndarray
    split: np.ndarray  # "train" | "val" | "test" per row
    fold: np.ndarray
    groups: list[str]
    near_duplicates: list[tuple[str, str]]
    manifest_problems: list[str]
    label_conflicts: list[tuple[str, str]]
    size: int
    taxonomy: Taxonomy | None = None
    left_out_labels: dict[str, int] = field(default_factory=dict)  # dataset labels the taxonomy does not map


def prepare_data(
    sources: Sequence[str | Path],
    *,
    image_size: int,
    crop: float = 1.0,
    fits_display: FitsDisplay | None = None,
    filters: Sequence[str] = (),
    framing: Framing = NO_FRAMING,
    taxonomy: str | None = None,
    seed: int = 0,
    test_frac: float = 0.2,
    val_frac: float = 0.15,
    folds: int = 5,
    splits_file: str | Path | None = None,
    data_dir: Path | None = None,
    progress: Progress = silent,
) -> PreparedData:
    """Load, decode, fingerprint, group and split every dataset in ``sources``.

    Parameters
    ----------
    sources : sequence of str or Path
        Dataset folders or collection names; labels merge by name.
    image_size : int
        Decoded images are letterboxed to this size.
    crop : float, default=1.0
        The central fraction of each image kept before resizing.
    framing : Framing, optional
        Crop each picture to its main object (``imaging.framing``); default: as it is.
    taxonomy : str, optional
        Label mapping (a built-in name or a YAML file); default: the collections' own.
    seed, test_frac, val_frac, folds
        The grouped, stratified split and its cross-validation folds.
    splits_file : path, optional
        Read the split from this ``splits.csv`` instead of making one.
    data_dir : Path, optional
        Where named collections live (default: ``ASTROCLASSIFY_DATA_DIR`` or ``shared/data``).
    """
    if not sources:
        raise ConfigError("no training data: pass --data DIR (a dataset folder or collection name)")
    samples: list[Sample] = []
    problems: list[str] = []
    for source in sources:
        ds = load_dataset(resolve_data(source, data_dir=data_dir))
        problems += [f"{ds.name}: {p}" for p in ds.problems]
        samples += ds.samples
    for problem in problems:
        log.warning("%s", problem)
    mapping = resolve_taxonomy(taxonomy, sources)
    left_out: dict[str, int] = {}
    if mapping is not None:
        samples, dropped = mapping.apply(samples)
        left_out = dict(dropped)
        if dropped:
            log.warning("taxonomy %s leaves out %s", mapping.name, dict(dropped))
    if not 0 < crop <= 1:
        raise ConfigError(f"crop must be in (0, 1]; got {crop}")
    table = build_table(
        samples,
        image_size,
        progress("decoding images", len(samples)),
        crop=crop,
        fits_display=fits_display,
        filters=filters,
        framing=framing,
    )
    labels = sorted({s.label for s in table.samples})
    if len(labels) < 2:
        raise DataError(f"training needs at least two labels; found {labels}")
    y = np.array([labels.index(s.label) for s in table.samples])
    groups, pairs = assign_groups(table.samples, table.fingerprints)
    keys = [s.key for s in table.samples]
    near = [(keys[a], keys[b]) for a, b in pairs]
    conflicts = [(keys[a], keys[b]) for a, b in pairs if y[a] != y[b]]
    if splits_file:
        split, fold = _splits_from_file(Path(splits_file), table)
    else:
        split_list, fold_list = make_splits_and_folds(
            table.samples, groups, test_frac=test_frac, val_frac=val_frac, folds=folds, seed=seed
        )
        split, fold = np.array(split_list), np.array(fold_list)
    return PreparedData(
        table=table,
        labels=labels,
        y=y,
        split=split,
        fold=fold,
        groups=groups,
        near_duplicates=near,
        manifest_problems=problems,
        label_conflicts=conflicts,
        size=image_size,
        taxonomy=mapping,
        left_out_labels=left_out,
    )


def write_split_file(path: Path, data: PreparedData) -> None:
    """``splits.csv``: every image's key, SHA-256, label, group, split and fold."""
    rows = [
        SplitAssignment(s.key, h, s.label, g, str(sp), int(f))
        for s, h, g, sp, f in zip(
            data.table.samples, data.table.sha256, data.groups, data.split, data.fold, strict=True
        )
    ]
    write_splits(path, rows)


@dataclass(frozen=True)
class SplitResult:
    """A ``splits.csv`` written: images per split, groups, near-duplicate pairs and label conflicts."""

    path: Path
    counts: dict[str, int]
    groups: int
    near_duplicate_pairs: int
    label_conflicts: int


def split_datasets(
    sources: Sequence[str | Path],
    out: str | Path,
    *,
    seed: int = 0,
    test_frac: float = 0.2,
    val_frac: float = 0.15,
    folds: int = 5,
    image_size: int = 64,
    data_dir: Path | None = None,
    progress: Progress = silent,
) -> SplitResult:
    """Write grouped, stratified, seeded train/val/test splits and CV folds to ``out`` (a CSV).

    The same split ``train`` makes with the same seed and fractions: near-duplicates and
    images of one object or release share a group, and a group never straddles two splits.

    Parameters
    ----------
    sources : sequence of str or Path
        Dataset folders or collection names, split together.
    out : str or Path
        The CSV to write (SHA-256, path, label, group, split, fold).
    seed : int
        Same seed, same data: same split.
    test_frac, val_frac : float
        Fractions of the groups held out for test and validation.
    folds : int
        CV folds over the non-test part.
    image_size : int
        Only sets the decode; fingerprints are taken at 128 px regardless.
    data_dir : Path, optional
        Where named collections are found.
    progress : callable, optional
        Called as images are decoded.

    Returns
    -------
    SplitResult
        ``path``, images per split, ``groups``, ``near_duplicate_pairs``, ``label_conflicts``.
    """
    data = prepare_data(
        sources,
        image_size=image_size,
        seed=seed,
        test_frac=test_frac,
        val_frac=val_frac,
        folds=folds,
        data_dir=data_dir,
        progress=progress,
    )
    write_split_file(Path(out), data)
    counts = {sp: int((data.split == sp).sum()) for sp in ("train", "val", "test")}
    return SplitResult(Path(out), counts, len(set(data.groups)), len(data.near_duplicates), len(data.label_conflicts))


def resolve_taxonomy(taxonomy: str | None, sources: Sequence[str | Path]) -> Taxonomy | None:
    """``taxonomy``, else the default of a collection among ``sources``, else None."""
    if taxonomy:
        return load_taxonomy(taxonomy)
    defaults = {DEFAULT_TAXONOMY[str(s)] for s in sources if str(s) in DEFAULT_TAXONOMY}
    if len(defaults) > 1:
        raise ConfigError(
            f"these datasets have different default taxonomies ({', '.join(sorted(defaults))}); pass --taxonomy"
        )
    return load_taxonomy(defaults.pop()) if defaults else None


def _splits_from_file(path: Path, table: ImageTable) -> tuple[np.ndarray, np.ndarray]:
    by_sha = {r.sha256: r for r in read_splits(path)}
    missing = [s.key for s, h in zip(table.samples, table.sha256, strict=True) if h not in by_sha]
    if missing:
        raise DataError(f"{path}: {len(missing)} image(s) are not in the splits file, e.g. {missing[0]}")
    rows = [by_sha[h] for h in table.sha256]
    return np.array([r.split for r in rows]), np.array([r.fold for r in rows])
