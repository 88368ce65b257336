"""Decode a list of samples once into an in-memory table of letterboxed pixels.

Small astronomy datasets fit in RAM at network resolution (5665 x 160² x 3 = 435 MB), and
decoding once instead of every epoch is what makes CPU training practical here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from astroclassify.data.collections import DEFAULT_TAXONOMY, resolve_data
from astroclassify.data.dataset import Sample, load_dataset, sha256_file
from astroclassify.data.splits import (
    Fingerprint,
    assign_groups,
    fingerprint,
    make_splits_and_folds,
    read_splits,
)
from astroclassify.data.taxonomy import Taxonomy, load_taxonomy
from astroclassify.errors import ConfigError, DataError, ImageDecodeError
from astroclassify.imaging.decode import decode_pil
from astroclassify.imaging.transforms import center_crop, letterbox
from astroclassify.training.config import TrainConfig

__all__ = ["ImageTable", "PreparedData", "Progress", "build_table", "prepare_data"]

# progress(description, total) -> advance(n); the CLI draws Rich bars, library use is silent.
Progress = Callable[[str, int], Callable[[int], None]]


def _silent(description: str, total: int) -> Callable[[int], None]:
    return lambda n=1: None


log = logging.getLogger(__name__)

FINGERPRINT_SIZE = 128


@dataclass
class ImageTable:
    samples: list[Sample]
    pixels: np.ndarray  # (N, S, S, 3) uint8, letterboxed
    fingerprints: list[Fingerprint]
    sha256: list[str]
    failed: list[str]  # "key: reason" for samples that could not be decoded


def build_table(samples: list[Sample], size: int, progress=None, crop: float = 1.0) -> ImageTable:
    kept: list[Sample] = []
    pixels: list[np.ndarray] = []
    prints: list[Fingerprint] = []
    shas: list[str] = []
    failed: list[str] = []
    for sample in samples:
        try:
            # The same decode, crop and resize as inference (OnnxPredictor.prepare).
            # At least FINGERPRINT_SIZE px, so near-duplicate checks do not depend on the network size.
            full = decode_pil(sample.path, draft_size=max(math.ceil(size / crop), FINGERPRINT_SIZE))
            img = center_crop(full, crop)
        except ImageDecodeError as exc:
            failed.append(f"{sample.key}: {str(exc).split(': ', 1)[-1]}")
        else:
            kept.append(sample)
            pixels.append(letterbox(img, size))
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


def prepare_data(cfg: TrainConfig, progress: Progress = _silent) -> PreparedData:
    """Load, decode, fingerprint, group and split every dataset named in ``cfg.data``."""
    if not cfg.data:
        raise ConfigError("no training data: pass --data DIR (a dataset folder or collection name)")
    samples: list[Sample] = []
    problems: list[str] = []
    for source in cfg.data:
        ds = load_dataset(resolve_data(source))
        problems += [f"{ds.name}: {p}" for p in ds.problems]
        samples += ds.samples
    for problem in problems:
        log.warning("%s", problem)
    taxonomy = resolve_taxonomy(cfg)
    left_out: dict[str, int] = {}
    if taxonomy is not None:
        samples, dropped = taxonomy.apply(samples)
        left_out = dict(dropped)
        if dropped:
            log.warning("taxonomy %s leaves out %s", taxonomy.name, dict(dropped))
    if not 0 < cfg.crop <= 1:
        raise ConfigError(f"crop must be in (0, 1]; got {cfg.crop}")
    size = cfg.image_size or _default_size(cfg.model)
    table = build_table(samples, size, progress("decoding images", len(samples)), crop=cfg.crop)
    labels = sorted({s.label for s in table.samples})
    if len(labels) < 2:
        raise DataError(f"training needs at least two labels; found {labels}")
    y = np.array([labels.index(s.label) for s in table.samples])
    groups, pairs = assign_groups(table.samples, table.fingerprints)
    keys = [s.key for s in table.samples]
    near = [(keys[a], keys[b]) for a, b in pairs]
    conflicts = [(keys[a], keys[b]) for a, b in pairs if y[a] != y[b]]
    if cfg.splits:
        split, fold = _splits_from_file(Path(cfg.splits), table)
    else:
        split_list, fold_list = make_splits_and_folds(
            table.samples, groups, test_frac=cfg.test_frac, val_frac=cfg.val_frac, folds=cfg.folds, seed=cfg.seed
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
        size=size,
        taxonomy=taxonomy,
        left_out_labels=left_out,
    )


def resolve_taxonomy(cfg: TrainConfig) -> Taxonomy | None:
    """``cfg.taxonomy``, else the default of a collection being trained on, else None."""
    if cfg.taxonomy:
        return load_taxonomy(cfg.taxonomy)
    defaults = {DEFAULT_TAXONOMY[s] for s in cfg.data if s in DEFAULT_TAXONOMY}
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


def _default_size(arch: str) -> int:
    from astroclassify.models import get_pretrained_cfg  # torch only when no size is given

    return get_pretrained_cfg(arch).input_size
