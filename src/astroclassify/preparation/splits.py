"""Leak-free, seeded train/validation/test splits grouped by object or release.

Why groups: ESA/Hubble ids such as ``heic0910a`` and ``heic0910f`` are crops or versions of
one release, and the NASA library holds Hubble releases again at other sizes. A split by
file puts the same object on both sides and inflates every metric. Samples are therefore
grouped by (1) an explicit ``group`` column, else the release number read from the id, and
(2) near-duplicate pixels across all datasets; whole groups go to one side of a split.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from astroclassify.errors import DataError
from astroclassify.preparation.dataset import Sample

__all__ = [
    "Fingerprint",
    "SplitAssignment",
    "assign_groups",
    "copies_of",
    "fingerprint",
    "make_splits_and_folds",
    "read_splits",
    "release_key",
    "write_splits",
]

# heic0910a → heic0910, potw1810b → potw1810, opo0624a → opo0624; other ids stay whole.
_RELEASE = re.compile(r"^([a-z]+[0-9]{3,})[a-z]{1,2}$", re.IGNORECASE)
ID_COLUMNS = ("group", "esa_id", "release", "object", "objid")


def release_key(sample: Sample) -> str:
    """The object/release a sample belongs to, from metadata or its file name."""
    if sample.meta.get("group"):
        return f"group:{sample.meta['group']}"
    ident = next((sample.meta[c] for c in ID_COLUMNS[1:] if sample.meta.get(c)), sample.path.stem)
    match = _RELEASE.match(ident)
    return (match.group(1) if match else ident).lower()


@dataclass(frozen=True)
class Fingerprint:
    """Exact pixel digest plus a small thumbnail for near-duplicate search."""

    pixels_sha: str
    thumb: np.ndarray  # (THUMB*THUMB,) zero-mean unit-norm grey thumbnail
    detail: np.ndarray  # (DETAIL*DETAIL,) zero-mean unit-norm high-pass grey image


THUMB = 24
NEAR_DUPLICATE_CORR = 0.985
# Second check on fine detail (64 px grey minus its blur). Copies of one image score 0.95 and
# up; different compact galaxies centred on black sky can match at 24 px (gz1-sdss chained
# 268 ellipticals into one group that way) but score 0.2-0.75 here, as did two different
# Hubble spirals (potw1329a, potw2026a: 0.20).
DETAIL = 64
DETAIL_CORR = 0.85


def fingerprint(image) -> Fingerprint:
    """Fingerprint decoded pixels (so re-encoded or resized copies still match).

    ``image`` is an RGB Pillow image or an (H, W, 3) uint8 array.
    """
    from PIL import Image, ImageFilter

    img = image if isinstance(image, Image.Image) else Image.fromarray(image)
    grey = img.convert("L")
    fine = grey.resize((DETAIL, DETAIL), Image.Resampling.BOX)
    high_pass = np.asarray(fine, np.float32) - np.asarray(fine.filter(ImageFilter.BoxBlur(3)), np.float32)
    return Fingerprint(
        hashlib.sha256(img.tobytes()).hexdigest(),
        _unit(np.asarray(grey.resize((THUMB, THUMB), Image.Resampling.BOX), dtype=np.float32)),
        _unit(high_pass),
    )


def _unit(a: np.ndarray) -> np.ndarray:
    t = a.ravel() - a.mean()
    norm = float(np.linalg.norm(t))
    return t / norm if norm > 1e-6 else t


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def assign_groups(
    samples: list[Sample], prints: list[Fingerprint], *, corr: float = NEAR_DUPLICATE_CORR
) -> tuple[list[str], list[tuple[int, int]]]:
    """Group ids per sample, and the near-duplicate pairs that merged groups.

    Near duplicates are pairs whose grey thumbnails correlate above ``corr`` (a resized or
    re-encoded copy scores > 0.99) and whose fine detail correlates above ``DETAIL_CORR``
    (two different compact galaxies on black sky can pass the first test, not this one).
    """
    n = len(samples)
    uf = _UnionFind(n)
    first_of: dict[str, int] = {}
    for i, s in enumerate(samples):
        key = release_key(s)
        if key in first_of:
            uf.union(first_of[key], i)
        else:
            first_of[key] = i
    pairs: list[tuple[int, int]] = []
    if n > 1:
        mat = np.stack([p.thumb for p in prints])
        for start in range(0, n, 1024):  # blockwise: memory stays O(1024 * n)
            sims = mat[start : start + 1024] @ mat.T
            rows, cols = np.nonzero(sims >= corr)
            for r, c in zip(rows + start, cols, strict=True):
                if r < c and float(prints[r].detail @ prints[c].detail) >= DETAIL_CORR:
                    pairs.append((int(r), int(c)))
                    uf.union(int(r), int(c))
    groups = [release_key(samples[uf.find(i)]) for i in range(n)]
    return groups, pairs


def copies_of(candidates: list[Fingerprint], references: list[Fingerprint]) -> list[int]:
    """Indices of ``candidates`` that are copies of any reference: the same decoded pixels, or a near duplicate.

    The same two tests as ``assign_groups`` (grey thumbnail, then fine detail), so what the
    splits keep on one side, this finds again: a re-encoded, resized or re-compressed copy.
    """
    if not candidates or not references:
        return []
    exact = {r.pixels_sha for r in references}
    refs, ref_detail = np.stack([r.thumb for r in references]), np.stack([r.detail for r in references])
    found = []
    for i, c in enumerate(candidates):
        if c.pixels_sha in exact:
            found.append(i)
            continue
        # Mirrored, flipped and rotated copies too: the eight symmetries of the square commute
        # with resizing to a square thumbnail, so they are found without decoding again.
        for thumb, detail in zip(_dihedral(c.thumb, THUMB), _dihedral(c.detail, DETAIL), strict=True):
            near = np.nonzero(refs @ thumb >= NEAR_DUPLICATE_CORR)[0]
            if len(near) and float(np.max(ref_detail[near] @ detail)) >= DETAIL_CORR:
                found.append(i)
                break
    return found


def _dihedral(flat: np.ndarray, side: int) -> list[np.ndarray]:
    """A square image (flattened) under the eight rotations and reflections, itself first."""
    square = flat.reshape(side, side)
    out = []
    for k in range(4):
        turned = np.rot90(square, k)
        out += [turned.ravel(), turned.T.ravel()]
    return out


@dataclass(frozen=True)
class SplitAssignment:
    key: str
    sha256: str
    label: str
    group: str
    split: str  # train | val | test
    fold: int  # cross-validation fold of the non-test part, -1 for test


def make_splits_and_folds(
    samples: list[Sample],
    groups: list[str],
    *,
    test_frac: float = 0.2,
    val_frac: float = 0.15,
    folds: int = 5,
    seed: int = 0,
) -> tuple[list[str], list[int]]:
    """Return 'train' / 'val' / 'test' and a cross-validation fold per sample.

    Stratified by dataset and label, grouped by ``groups``, deterministic for a seed; the
    folds split the non-test part (test rows get fold -1).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if not 0 < test_frac < 0.5 or not 0 < val_frac < 0.5:
        raise DataError(f"test_frac and val_frac must be in (0, 0.5); got {test_frac}, {val_frac}")
    n = len(samples)
    strata = np.array([f"{s.dataset}:{s.label}" for s in samples])
    group_arr = np.array(groups)
    idx = np.arange(n)
    split = np.array(["train"] * n, dtype=object)

    def one_fold(members: np.ndarray, frac: float, salt: int) -> np.ndarray:
        k = max(2, round(1 / frac))
        if len(set(group_arr[members])) < k:
            raise DataError(f"only {len(set(group_arr[members]))} groups; need at least {k} to split")
        sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed + salt)
        _, held = next(iter(sgkf.split(members, strata[members], group_arr[members])))
        return members[held]

    test = one_fold(idx, test_frac, 0)
    split[test] = "test"
    rest = idx[split != "test"]
    val = one_fold(rest, val_frac / (1 - test_frac), 1)
    split[val] = "val"
    fold = np.full(n, -1)
    if folds >= 2:
        sgkf = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed + 2)
        for f, (_, held) in enumerate(sgkf.split(rest, strata[rest], group_arr[rest])):
            fold[rest[held]] = f
    return list(split), [int(f) for f in fold]


def write_splits(path: Path, rows: list[SplitAssignment]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["key", "sha256", "label", "group", "split", "fold"])
        for r in rows:
            writer.writerow([r.key, r.sha256, r.label, r.group, r.split, r.fold])


def read_splits(path: Path) -> list[SplitAssignment]:
    """A split file (a model folder's, or one given with ``--splits``), read within a manifest's bounds."""
    from astroclassify.preparation.dataset import read_manifest

    try:
        _, rows = read_manifest(path)
        return [
            SplitAssignment(r["key"], r["sha256"], r["label"], r["group"], r["split"], int(r["fold"]))
            for _, r, _ in rows
        ]
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path}: unreadable splits file ({exc})") from None
