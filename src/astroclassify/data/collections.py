"""Named collections and ``fetch``: copy or download a dataset and verify every checksum.

A name such as ``hubble-dso`` resolves to ``<data_dir>/hubble-dso``. ``data_dir`` is the
``ASTROCLASSIFY_DATA_DIR`` setting, else the first ``shared/data`` folder found beside the
working directory or the source checkout (the layout our CI and developers use).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

from astroclassify.config import default_data_dir
from astroclassify.data.dataset import load_dataset, sha256_file
from astroclassify.errors import DataError, IngestError
from astroclassify.registry import Registry

__all__ = ["COLLECTIONS", "DEFAULT_TAXONOMY", "fetch", "resolve_data", "shared_data_dir"]

log = logging.getLogger(__name__)

COLLECTIONS: Registry[str] = Registry("collection")
for _name, _about in {
    "hubble-dso": "ESA/Hubble galaxies vs nebulae, 371 images, CC BY 4.0",
    "nasa-planets-galaxies": "NASA Image Library planets vs galaxies, 196 images",
    "gz1-sdss": "SDSS cutouts with Galaxy Zoo 1 morphology, 6 classes, 5665 images",
    "gz-decals-rings": "DECaLS ring galaxies vs others, 376 images",
}.items():
    COLLECTIONS.register(_name)(_about)


# Taxonomy used when training on a collection without --taxonomy. gz1-sdss needs one: its
# spiral labels swap under a mirror flip, which the taxonomy's mirror map expresses.
DEFAULT_TAXONOMY = {"gz1-sdss": "gz1-6class"}


def shared_data_dir(data_dir: Path | None = None) -> Path | None:
    """Where named collections live: ``data_dir``, ``ASTROCLASSIFY_DATA_DIR``, or ``shared/data`` nearby."""
    data_dir = data_dir or default_data_dir()
    if data_dir:
        return data_dir
    here = Path(__file__).resolve()
    for base in (Path.cwd(), *Path.cwd().parents[:2], *here.parents[2:5]):
        candidate = base / "shared" / "data"
        if candidate.is_dir():
            return candidate
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return None


def resolve_data(source: str | Path, *, data_dir: Path | None = None) -> Path:
    """A dataset folder path for a folder path or a collection name."""
    source = str(source)
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if source in COLLECTIONS:
        base = shared_data_dir(data_dir)
        if base and (base / source).is_dir():
            return base / source
        raise DataError(
            f"collection {source!r} not found locally; run `astroclassify data fetch {source} "
            f"--out DIR` or set ASTROCLASSIFY_DATA_DIR to the folder that holds it"
        )
    if path.exists():
        raise DataError(f"{source}: not a folder; a dataset is a folder with manifest.csv")
    if "/" in source or "\\" in source or source.startswith("."):
        raise DataError(f"{source}: dataset folder not found")
    COLLECTIONS.get(source)  # raises UnknownNameError with close matches
    raise AssertionError("unreachable")


def fetch(
    source: str | Path, out: str | Path, *, timeout: float = 60.0, data_dir: Path | None = None, progress=None
) -> int:
    """Copy/download a collection into ``out`` and verify each file's SHA-256.

    Parameters
    ----------
    source : str or Path
        A collection name, a folder, an archive (.zip, .tar, .tar.gz) or an http(s) URL to one.
    out : str or Path
        The folder to fill.
    timeout : float
        Seconds without progress before a download is abandoned.
    data_dir : Path, optional
        Where named collections are found.
    progress : callable, optional
        Called as files are verified.

    Returns
    -------
    int
        The number of verified files.

    Raises
    ------
    IngestError
        Download failed, unsafe archive member, or a checksum mismatch (nothing is left
        half-written in ``out``: files are verified in a temporary folder first).
    """
    source, out = str(source), Path(out)
    if out.exists() and any(out.iterdir()):
        raise IngestError(f"{out}: output folder exists and is not empty")
    with tempfile.TemporaryDirectory(prefix="astroclassify-fetch-") as tmp:
        staging = Path(tmp) / "data"
        if source.startswith(("http://", "https://")):
            archive = Path(tmp) / Path(source.split("?")[0]).name
            _download(source, archive, timeout=timeout)
            _extract(archive, staging)
        else:
            src = Path(source).expanduser()
            if not src.exists():
                src = resolve_data(source, data_dir=data_dir)
            if src.is_dir():
                shutil.copytree(src, staging)
            else:
                _extract(src, staging)
        root = _dataset_root(staging)
        count = verify_checksums(root, progress=progress)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(root, out, dirs_exist_ok=True)
    return count


def verify_checksums(root: Path, progress=None) -> int:
    ds = load_dataset(root)
    if ds.problems:
        raise IngestError(f"{root}: manifest problems: {'; '.join(ds.problems[:5])}")
    bad = []
    unchecked = 0
    for s in ds.samples:
        expected = s.meta.get("sha256", "").lower()
        if not expected:
            unchecked += 1
        elif sha256_file(s.path) != expected:
            bad.append(s.meta.get("file", s.path.name))
        if progress:
            progress()
    if bad:
        raise IngestError(f"SHA-256 mismatch for {len(bad)} file(s): {', '.join(bad[:5])}")
    if unchecked:
        log.warning("%d file(s) have no sha256 in the manifest and were not verified", unchecked)
    return len(ds.samples) - unchecked


def _download(url: str, dest: Path, *, timeout: float) -> None:
    import httpx

    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as resp:
            resp.raise_for_status()
            digest = hashlib.sha256()
            with dest.open("wb") as fh:
                for chunk in resp.iter_bytes():
                    fh.write(chunk)
                    digest.update(chunk)
    except httpx.HTTPError as exc:
        raise IngestError(f"download of {url} failed: {exc}") from None


def _extract(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    name = archive.name.lower()
    try:
        if name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    _check_member(member)
                zf.extractall(dest)
        elif name.endswith((".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.bz2")):
            with tarfile.open(archive) as tf:
                tf.extractall(dest, filter="data")  # rejects traversal, links outside, devices
        else:
            raise IngestError(f"{archive}: not a folder or a .zip/.tar(.gz) archive")
    except (zipfile.BadZipFile, tarfile.TarError) as exc:
        raise IngestError(f"{archive}: unreadable archive ({exc})") from None


def _check_member(member: str) -> None:
    parts = Path(member).parts
    if member.startswith(("/", "\\")) or ".." in parts:
        raise IngestError(f"archive member {member!r} would be written outside the output folder")


def _dataset_root(staging: Path) -> Path:
    """The folder holding manifest.csv (archives often wrap it in one top folder)."""
    if (staging / "manifest.csv").is_file():
        return staging
    found = sorted(staging.rglob("manifest.csv"), key=lambda p: len(p.parts))
    if found:
        return found[0].parent
    return staging
