"""Named collections and ``fetch``: copy or download a dataset and verify every checksum.

A name such as ``hubble-dso`` resolves to ``<data_dir>/hubble-dso``. ``data_dir`` is the
``ASTROCLASSIFY_DATA_DIR`` setting, else the first ``shared/data`` folder found beside the
working directory or the source checkout (the layout our CI and developers use).
"""

from __future__ import annotations

import logging
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

from astroclassify.errors import DataError, FileTooLargeError, IngestError
from astroclassify.files.sizes import format_bytes
from astroclassify.files.zipdir import open_zip_within
from astroclassify.preparation.dataset import load_dataset, sha256_file
from astroclassify.preparation.galaxy10 import GALAXY10, h5_to_dataset
from astroclassify.registry import Registry

__all__ = ["COLLECTIONS", "DEFAULT_TAXONOMY", "fetch", "resolve_data", "shared_data_dir"]

log = logging.getLogger(__name__)

COLLECTIONS: Registry[str] = Registry("collection")
for _name, _about in {
    "hubble-dso": "ESA/Hubble galaxies vs nebulae, 371 images, CC BY 4.0",
    "nasa-planets-galaxies": "NASA Image Library planets vs galaxies, 196 images",
    "gz1-sdss": "SDSS cutouts with Galaxy Zoo 1 morphology, 6 classes, 5665 images",
    "gz-decals-rings": "DECaLS ring galaxies vs others, 376 images",
    "stellarium-dso": "Stellarium's galaxies, nebulae and star clusters from ordinary telescopes, 258 images",
    "hubble-galaxy-types": "ESA/Hubble press images filed as spiral, elliptical or irregular, 171 images, CC BY 4.0",
}.items():
    COLLECTIONS.register(_name)(_about)
for _name, _h5 in GALAXY10.items():  # published as one HDF5 file each: `data fetch NAME` converts it
    COLLECTIONS.register(_name)(_h5.about)


# Taxonomy used when training on a collection without --taxonomy. gz1-sdss needs one: its
# spiral labels swap under a mirror flip, which the taxonomy's mirror map expresses.
DEFAULT_TAXONOMY = {"gz1-sdss": "gz1-6class"}
# What one `data fetch` may cost: the largest public image sets we know of fit, a bomb does not.
FETCH_MAX_BYTES = 8 * 1024**3  # downloaded
FETCH_MAX_EXTRACTED_BYTES = 32 * 1024**3  # unpacked from an archive
FETCH_MAX_FILES = 1_000_000  # archive members


def shared_data_dir(data_dir: Path | None = None) -> Path | None:
    """Where named collections live: ``data_dir`` (the CLI passes ``ASTROCLASSIFY_DATA_DIR``), else ``shared/data`` nearby."""
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
    base = shared_data_dir(data_dir)
    if (
        base
        and not any(c in source for c in "/\\")
        and not source.startswith(".")
        and (base / source / "manifest.csv").is_file()
    ):
        return base / source  # any dataset folder in the data folder is a collection, registered or not
    if source in COLLECTIONS:
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
    source: str | Path,
    out: str | Path,
    *,
    timeout: float = 60.0,
    data_dir: Path | None = None,
    progress=None,
    max_bytes: int = FETCH_MAX_BYTES,
    max_extracted_bytes: int = FETCH_MAX_EXTRACTED_BYTES,
    max_files: int = FETCH_MAX_FILES,
) -> int:
    """Copy/download a collection into ``out`` and verify each file's SHA-256.

    Parameters
    ----------
    source : str or Path
        A collection name, a folder, an archive (.zip, .tar, .tar.gz) or an http(s) URL to one;
        or a Galaxy10-layout ``.h5`` file (``galaxy10-decals``, ``galaxy10-sdss``, a path or a
        URL), written out as one PNG per row and a manifest.
    out : str or Path
        The folder to fill.
    timeout : float
        Seconds without progress before a download is abandoned.
    data_dir : Path, optional
        Where named collections are found.
    progress : callable, optional
        Called as files are verified.
    max_bytes : int, default=8 GiB
        A download larger than this is stopped (by ``Content-Length``, then while streaming).
    max_extracted_bytes : int, default=32 GiB
        An archive whose members add up to more is refused before anything is unpacked.
    max_files : int, default=1,000,000
        An archive with more members is refused (a zip's count is read from its end record).

    Returns
    -------
    int
        The number of verified files.

    Raises
    ------
    IngestError
        Download failed or over its limit, unsafe or oversized archive, or a checksum
        mismatch (nothing is left half-written in ``out``: files are verified in a temporary
        folder first).
    """
    source, out = str(source), Path(out)
    if out.exists() and any(out.iterdir()):
        raise IngestError(f"{out}: output folder exists and is not empty")
    with tempfile.TemporaryDirectory(prefix="astroclassify-fetch-") as tmp:
        staging = Path(tmp) / "data"
        h5 = _hdf5_source(source, Path(tmp), timeout=timeout, max_bytes=max_bytes)
        if h5 is not None:
            h5_to_dataset(h5, staging, progress=progress)
        elif source.startswith(("http://", "https://")):
            archive = Path(tmp) / Path(source.split("?")[0]).name
            _download(source, archive, timeout=timeout, max_bytes=max_bytes)
            _extract(archive, staging, max_bytes=max_extracted_bytes, max_files=max_files)
        else:
            src = Path(source).expanduser()
            if not src.exists():
                src = resolve_data(source, data_dir=data_dir)
            if src.is_dir():
                shutil.copytree(src, staging)
            else:
                _extract(src, staging, max_bytes=max_extracted_bytes, max_files=max_files)
        root = _dataset_root(staging)
        count = verify_checksums(root, progress=progress)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(root, out, dirs_exist_ok=True)
    return count


def _hdf5_source(source: str, tmp: Path, *, timeout: float, max_bytes: int) -> Path | None:
    """The HDF5 file a Galaxy10 name, URL or path stands for, its published checksum checked; None for others."""
    known = GALAXY10.get(source)
    if known is None and not source.split("?")[0].endswith(".h5"):
        return None
    url = known.url if known else source
    if url.startswith(("http://", "https://")):
        path = tmp / Path(url.split("?")[0]).name
        _download(url, path, timeout=timeout, max_bytes=max_bytes)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise IngestError(f"{source}: no such file")
    published = known or next((c for c in GALAXY10.values() if Path(c.url).name == path.name), None)
    if published is not None:  # a file by a published name must be that file
        digest = sha256_file(path)
        if digest != published.sha256:
            raise IngestError(f"{path.name}: SHA-256 {digest[:12]}... is not the published {published.sha256[:12]}...")
    return path


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


def _download(url: str, dest: Path, *, timeout: float, max_bytes: int) -> None:
    import httpx

    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as resp:
            resp.raise_for_status()
            declared = resp.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise IngestError(
                    f"{url} is {format_bytes(int(declared))}, over the {format_bytes(max_bytes)} download limit"
                )
            size = 0
            with dest.open("wb") as fh:
                for chunk in resp.iter_raw():  # as sent: a gzip Content-Encoding is not inflated here
                    size += len(chunk)
                    if size > max_bytes:
                        raise IngestError(f"{url}: download is over the {format_bytes(max_bytes)} limit; stopped")
                    fh.write(chunk)
    except httpx.HTTPError as exc:
        raise IngestError(f"download of {url} failed: {exc}") from None


def _extract(archive: Path, dest: Path, *, max_bytes: int, max_files: int) -> None:
    """Unpack within limits checked from the archive's listing, before anything is written."""
    dest.mkdir(parents=True)
    name = archive.name.lower()
    try:
        if name.endswith(".zip"):
            with archive.open("rb") as fh, open_zip_within(fh, max_files, archive.name) as zf:
                listed = zf.infolist()
                for info in listed:
                    _check_member(info.filename)
                _check_total(archive, sum(m.file_size for m in listed), max_bytes)
                zf.extractall(dest)  # zipfile writes no more than each member's stated size
        elif name.endswith((".tar", ".tar.gz", ".tgz", ".tar.xz", ".tar.bz2")):
            with tarfile.open(archive) as tf:
                members: list[tarfile.TarInfo] = []
                total = 0
                while (member := tf.next()) is not None:  # stops early: no full listing of a bomb
                    members.append(member)
                    total += member.size
                    if len(members) > max_files:
                        raise IngestError(f"{archive}: over {max_files} members; the limit is {max_files}")
                    _check_total(archive, total, max_bytes)
                tf.extractall(dest, members=members, filter="data")  # rejects traversal, links outside, devices
        else:
            raise IngestError(f"{archive}: not a folder or a .zip/.tar(.gz) archive")
    except FileTooLargeError as exc:
        raise IngestError(str(exc)) from None
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise IngestError(f"{archive}: unreadable archive ({exc})") from None


def _check_total(archive: Path, total: int, max_bytes: int) -> None:
    if total > max_bytes:
        raise IngestError(
            f"{archive}: unpacks to at least {format_bytes(total)}, over the {format_bytes(max_bytes)} limit"
        )


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
