"""A dataset is a folder with ``manifest.csv`` (``file,label`` + metadata) or one sub-folder per label.

A manifest may also carry soft labels: a numeric column per tag ending in ``_fraction`` (a
probability or a vote fraction, as Galaxy Zoo publishes them: ``not_edge_on_fraction``), or a
``tags`` column of ``;``-separated names (each named tag 1, every other tag of the dataset 0).
They are kept per image in ``Sample.targets``, named without the suffix; an empty cell is no
answer (the tag is left out of that image's loss), not 0.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from astroclassify.errors import DataError, ImageDecodeError

__all__ = ["IMAGE_SUFFIXES", "CheckReport", "Dataset", "Sample", "check_dataset", "load_dataset", "read_manifest"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp", ".fits", ".fit", ".fts"})
REQUIRED_COLUMNS = ("file", "label")
SOFT_SUFFIX = "_fraction"
TAGS_COLUMN = "tags"
# Columns the package itself reads: not "extra" metadata.
KNOWN_COLUMNS = (*REQUIRED_COLUMNS, "sha256", TAGS_COLUMN)


@dataclass(frozen=True)
class Sample:
    """One labelled image; ``meta`` keeps the manifest's extra columns."""

    path: Path
    label: str
    dataset: str
    meta: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    targets: dict[str, float] = field(default_factory=dict, hash=False, compare=False)  # soft labels, in [0, 1]

    @property
    def key(self) -> str:
        """Dataset-qualified relative file name, stable across machines."""
        return f"{self.dataset}/{self.meta.get('file', self.path.name)}"


@dataclass
class Dataset:
    name: str
    root: Path
    samples: list[Sample]
    extra_columns: list[str]
    problems: list[str]  # rows skipped while loading, one line each

    @property
    def labels(self) -> list[str]:
        return sorted({s.label for s in self.samples})

    def class_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(s.label for s in self.samples).items()))

    @property
    def tag_names(self) -> list[str]:
        """The soft labels this dataset carries (``_fraction`` columns without the suffix, and ``tags``)."""
        return sorted({name for s in self.samples for name in s.targets})

    def __repr__(self) -> str:  # the dataclass repr listed every sample (134 KB for one dataset)
        counts = ", ".join(f"{k}: {v}" for k, v in self.class_counts().items())
        problems = f", {len(self.problems)} problem row(s)" if self.problems else ""
        return f"Dataset({self.name!r}, {len(self.samples)} images: {counts}{problems})"


def load_dataset(root: str | Path, name: str | None = None) -> Dataset:
    """Read a dataset folder; rows that cannot be used are listed in ``problems``, not raised.

    Raises
    ------
    DataError
        The folder is missing, or the manifest is unreadable / lacks ``file`` or ``label``,
        or no usable image remains.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    name = name or root.resolve().name
    manifest = root / "manifest.csv"
    ds = _from_manifest(root, name, manifest) if manifest.is_file() else _from_folders(root, name)
    if not ds.samples:
        detail = f" ({len(ds.problems)} problem rows)" if ds.problems else ""
        raise DataError(f"{root}: no usable labelled images found{detail}")
    return ds


# A manifest's bounds, checked while it is read (a 1.5 MB header of 200k columns took 5.7 GB as
# dicts; 5M rows 2.6 GB): Galaxy Zoo 2's table, the largest here, is 240k rows of ~20 columns.
MAX_COLUMNS = 1_000
MAX_ROWS = 1_000_000
MAX_CELLS = 5_000_000  # rows x columns: each cell is kept in its sample's metadata
MAX_LINE = 1 << 20  # characters in one line of the file


def _bounded_lines(fh, manifest: Path):
    """The file's lines, refusing one longer than ``MAX_LINE`` before the csv module splits it."""
    while line := fh.readline(MAX_LINE + 1):
        if len(line) > MAX_LINE:
            raise DataError(f"{manifest}: a line over {MAX_LINE:,} characters; a manifest row is a few hundred")
        yield line


def read_manifest(manifest: Path) -> tuple[list[str], list[tuple[int, dict[str, str], bool]]]:
    """A manifest's columns and its rows (line number, cells by column, whether it had more cells), bounded.

    Raises
    ------
    DataError
        Unreadable, or over ``MAX_COLUMNS`` columns, ``MAX_ROWS`` rows, ``MAX_CELLS`` cells or a
        line of ``MAX_LINE`` characters: refused while reading, before its size is paid for.
    """
    rows: list[tuple[int, dict[str, str], bool]] = []
    try:
        with manifest.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(_bounded_lines(fh, manifest))
            header = next(reader, [])
            if len(header) > MAX_COLUMNS:
                raise DataError(f"{manifest}: {len(header):,} columns, over the {MAX_COLUMNS:,} a manifest may have")
            columns = [c.strip() for c in header]
            most = min(MAX_ROWS, MAX_CELLS // max(1, len(columns)))
            for lineno, cells in enumerate(reader, start=2):
                if not cells:
                    continue
                if len(rows) >= most:
                    raise DataError(
                        f"{manifest}: over {most:,} rows of {len(columns)} columns; split it into several datasets"
                    )
                row = dict.fromkeys(columns, "") | dict(zip(columns, cells, strict=False))
                rows.append((lineno, row, len(cells) > len(columns)))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{manifest}: not a readable CSV file ({exc})") from None
    return columns, rows


def _from_manifest(root: Path, name: str, manifest: Path) -> Dataset:
    columns, rows = read_manifest(manifest)
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise DataError(
            f"{manifest}: missing column(s) {', '.join(missing)}; expected a header with "
            f"'file,label' (got {', '.join(columns) or 'no header'})"
        )
    samples: list[Sample] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    soft = [c for c in columns if c.endswith(SOFT_SUFFIX) and len(c) > len(SOFT_SUFFIX)]
    vocabulary = _tag_vocabulary([r for _, r, _ in rows]) if TAGS_COLUMN in columns else []
    # Containment is checked lexically: "../" escapes are refused, symlinks the user placed
    # inside the dataset folder are followed.
    root_abs = Path(os.path.abspath(root))
    for lineno, raw, too_many in rows:
        if too_many:
            problems.append(f"line {lineno}: more values than columns")
            continue
        row = {k: v.strip() for k, v in raw.items()}
        file, label = row.get("file", ""), row.get("label", "")
        if not file:
            problems.append(f"line {lineno}: empty 'file'")
            continue
        if not label:
            problems.append(f"line {lineno}: {file}: empty 'label'")
            continue
        if file in seen:
            problems.append(f"line {lineno}: {file}: duplicate row (first on line {seen[file]})")
            continue
        seen[file] = lineno
        path = Path(os.path.normpath(root_abs / file))
        if not path.is_relative_to(root_abs):
            problems.append(f"line {lineno}: {file}: path leaves the dataset folder")
            continue
        if not path.is_file():
            problems.append(f"line {lineno}: {file}: file not found")
            continue
        targets, bad = _targets(row, soft, vocabulary)
        problems += [f"line {lineno}: {file}: {b}" for b in bad]
        samples.append(Sample(path=path, label=label, dataset=name, meta=row, targets=targets))
    extra = [c for c in columns if c not in KNOWN_COLUMNS and c not in soft]
    return Dataset(name, root, samples, extra, problems)


def _tag_vocabulary(rows: list[dict]) -> list[str]:
    return sorted({t.strip() for r in rows for t in (r.get(TAGS_COLUMN) or "").split(";") if t.strip()})


def _targets(row: dict[str, str], soft: list[str], vocabulary: list[str]) -> tuple[dict[str, float], list[str]]:
    """An image's soft labels, and the cells that could not be read (that tag is then left out, not guessed)."""
    targets: dict[str, float] = {}
    bad: list[str] = []
    for column in soft:
        cell = row.get(column, "")
        if not cell or cell.lower() == "nan":  # no answer: the tag does not count for this image
            continue
        try:
            value = float(cell)
        except ValueError:
            value = float("nan")
        if not 0.0 <= value <= 1.0:  # also NaN from an unreadable cell
            bad.append(f"{column} is {cell!r}, not a fraction in [0, 1]; left out")
            continue
        targets[column.removesuffix(SOFT_SUFFIX)] = value
    if vocabulary:
        named = {t.strip() for t in row.get(TAGS_COLUMN, "").split(";") if t.strip()}
        targets |= {tag: float(tag in named) for tag in vocabulary}
    return targets, bad


def _from_folders(root: Path, name: str) -> Dataset:
    samples: list[Sample] = []
    problems: list[str] = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in sorted(label_dir.rglob("*")):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                rel = path.relative_to(root).as_posix()
                samples.append(Sample(path.resolve(), label_dir.name, name, {"file": rel}))
            elif path.is_file() and not path.name.startswith("."):
                problems.append(f"{path.relative_to(root)}: not an image file name, ignored")
    if not samples and not problems:
        raise DataError(
            f"{root}: no manifest.csv and no label sub-folders with images; expected "
            f"DIR/manifest.csv (columns file,label) or DIR/<label>/<image>"
        )
    return Dataset(name, root, samples, [], problems)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class CheckReport:
    dataset: Dataset
    errors: list[str]
    warnings: list[str]

    @property
    def ok(self) -> bool:
        return not self.errors

    def __repr__(self) -> str:
        state = "ok" if self.ok else f"{len(self.errors)} error(s), first: {self.errors[0]!r}"
        return f"CheckReport({self.dataset.name!r}, {len(self.dataset.samples)} images: {state}; {len(self.warnings)} warning(s))"


def check_dataset(
    root: str | Path, *, labels: set[str] | None = None, decode: bool = True, progress=None
) -> CheckReport:
    """Validate every row: files present and decodable, checksums, duplicates, labels.

    ``labels``, if given, is the allowed label set; other labels are errors.
    ``progress(description, total) -> advance(n)`` draws a progress bar, as elsewhere.
    """
    from astroclassify.imaging.decode import decode_image

    ds = load_dataset(root)
    advance = progress("checking", len(ds.samples)) if progress else None
    errors = list(ds.problems)
    warnings_: list[str] = []
    if ds.extra_columns:
        warnings_.append(f"extra columns kept as metadata: {', '.join(ds.extra_columns)}")

    by_hash: dict[str, str] = {}
    for sample in ds.samples:
        rel = sample.meta.get("file", sample.path.name)
        if labels is not None and sample.label not in labels:
            errors.append(f"{rel}: unknown label {sample.label!r} (allowed: {', '.join(sorted(labels))})")
        digest = sha256_file(sample.path)
        expected = sample.meta.get("sha256")
        if expected and expected.lower() != digest:
            errors.append(f"{rel}: SHA-256 mismatch (manifest {expected[:12]}…, file {digest[:12]}…)")
        if digest in by_hash:
            warnings_.append(f"{rel}: same bytes as {by_hash[digest]}")
        else:
            by_hash[digest] = rel
        if decode:
            try:
                decode_image(sample.path)
            except ImageDecodeError as exc:
                errors.append(f"{rel}: {str(exc).split(': ', 1)[-1]}")
        if advance:
            advance(1)
    counts = ds.class_counts()
    if len(counts) < 2:
        warnings_.append(f"only one class ({', '.join(counts)}): a classifier needs at least two")
    if counts and max(counts.values()) > 10 * min(counts.values()):
        warnings_.append("classes are strongly imbalanced (>10:1): use balanced sampling and macro-F1")
    return CheckReport(ds, errors, warnings_)
