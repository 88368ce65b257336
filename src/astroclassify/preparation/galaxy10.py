"""Galaxy10 (astroNN; Leung & Bovy): the seed projects' dataset, as an ordinary dataset folder.

The seeds train MobileNet and SqueezeNet on ``Galaxy10_DECals.h5`` (17,736 DECaLS cutouts of
256 px in 10 classes; an ``images`` array, an ``ans`` label array, ``ra``/``dec``) or the
older SDSS ``Galaxy10.h5`` (21,785 cutouts of 69 px). Neither is in the data folder here,
but users can fetch them: ``data fetch galaxy10-decals --out DIR`` downloads the file from its
public record, checks its published SHA-256, and writes one PNG per row and a manifest (a local
``.h5`` path is converted the same way). Rows are read a block at a time through h5py's lazy
datasets, so the 2.7 GB of pixels never sit in memory at once; each row's group is its sky
position, so a galaxy listed twice stays on one side of the split.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from astroclassify.errors import DataError
from astroclassify.files.sizes import format_bytes

__all__ = ["GALAXY10", "H5Collection", "h5_to_dataset"]

log = logging.getLogger(__name__)

BLOCK = 256  # rows read from the file at a time (fewer where rows are large: BLOCK_BYTES)


@dataclass(frozen=True)
class H5Collection:
    """A collection published as one HDF5 file: where it is, its checksum and what its labels mean."""

    url: str
    sha256: str
    classes: tuple[str, ...]  # label of each ``ans`` value
    size: int  # image side in pixels: how a local file's layout is recognised
    about: str


GALAXY10 = {
    "galaxy10-decals": H5Collection(
        url="https://zenodo.org/records/10845026/files/Galaxy10_DECals.h5",
        sha256="19aefc477c41bb7f77ff07599a6b82a038dc042f889a111b0d4d98bb755c1571",
        classes=(
            "disturbed",
            "merging",
            "round_smooth",
            "in_between_round_smooth",
            "cigar_shaped_smooth",
            "barred_spiral",
            "unbarred_tight_spiral",
            "unbarred_loose_spiral",
            "edge_on_without_bulge",
            "edge_on_with_bulge",
        ),
        size=256,
        about="Galaxy10 DECaLS (astroNN): 17,736 DECaLS cutouts, 10 Galaxy Zoo classes, 2.7 GB download",
    ),
    "galaxy10-sdss": H5Collection(
        url="https://zenodo.org/records/10844811/files/Galaxy10.h5",
        sha256="969a6b1cefcc36e09fffa86febd2f699a4aa19b837ba0427f01b0bc6ded458af",
        classes=(
            "disk_face_on_no_spiral",
            "smooth_completely_round",
            "smooth_in_between_round",
            "smooth_cigar_shaped",
            "disk_edge_on_rounded_bulge",
            "disk_edge_on_boxy_bulge",
            "disk_edge_on_no_bulge",
            "disk_face_on_tight_spiral",
            "disk_face_on_medium_spiral",
            "disk_face_on_loose_spiral",
        ),
        size=69,
        about="Galaxy10 SDSS (astroNN): 21,785 SDSS cutouts of 69 px, 10 Galaxy Zoo classes",
    ),
}


# What a Galaxy10-layout file may hold, checked from its header before any row is read: both
# published files fit (21,785 rows of 69 px; 17,736 of 256 px, 3.5 GB of PNGs). A 1.6 KB file
# can declare 10^8 rows, and its rows 4 Mpx each, without storing a byte of them.
MAX_ROWS = 100_000
MAX_SIDE = 1024
MAX_OUTPUT = 20 * 2**30  # bytes of PNGs, counted as uncompressed pixels (noise barely compresses)
BLOCK_BYTES = 64 * 2**20  # pixels read from the file at a time


def _dataset(f, name: str, h5: Path):  # h5py objects are untyped
    """``f[name]`` as an array stored in this file: an external link, external raw storage or a
    virtual dataset would read other files on this machine into the output images."""
    import h5py

    link = f.get(name, getlink=True)
    if link is None:
        return None
    if not isinstance(link, h5py.HardLink):
        raise DataError(f"{h5}: `{name}` is a link to another place ({type(link).__name__}); refused")
    obj = f.get(name)
    if not isinstance(obj, h5py.Dataset):
        return None
    if obj.external or obj.is_virtual:
        raise DataError(f"{h5}: `{name}` keeps its data in other files (external or virtual); refused")
    return obj


def h5_to_dataset(h5: Path, out: Path, *, progress=None) -> int:
    """Write a Galaxy10-layout HDF5 file's rows into ``out`` as PNGs and a manifest; returns the rows written.

    The layout: ``images`` (N x S x S x 3 uint8), ``ans`` (N integer labels), optionally ``ra``
    and ``dec`` (N numbers, degrees) that group a galaxy listed twice. A row whose label is not
    a whole number (NaN, say) is left out and counted in the log.

    Raises
    ------
    DataError
        Not an HDF5 file, not the layout, data kept in other files, or more rows, pixels or
        output bytes than ``MAX_ROWS``, ``MAX_SIDE`` and ``MAX_OUTPUT`` (or the free disk) allow.
    """
    import shutil

    import h5py
    from PIL import Image

    try:
        f = h5py.File(h5, "r")
    except OSError as exc:
        raise DataError(f"{h5}: not a readable HDF5 file ({exc})") from None
    with f:
        images, ans = _dataset(f, "images", h5), _dataset(f, "ans", h5)
        if images is None or ans is None:
            raise DataError(f"{h5}: a Galaxy10 file holds `images` and `ans` arrays; found {sorted(f)}")
        n = images.shape[0] if images.ndim else 0
        if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8 or ans.shape != (n,):
            raise DataError(
                f"{h5}: `images` must be N x S x S x 3 uint8 and `ans` N labels; got {images.shape}, {ans.shape}"
            )
        if ans.dtype.kind not in "iuf":
            raise DataError(f"{h5}: `ans` must hold integer labels; got {ans.dtype}")
        side = max(images.shape[1], images.shape[2])
        if n > MAX_ROWS or side > MAX_SIDE:
            raise DataError(
                f"{h5}: {n:,} rows of {images.shape[1]} x {images.shape[2]} px; a Galaxy10 file may have up to "
                f"{MAX_ROWS:,} rows of {MAX_SIDE} px"
            )
        row_bytes = images.shape[1] * images.shape[2] * 3
        need = n * row_bytes
        out.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(out).free
        if need > min(MAX_OUTPUT, free):
            where = (
                f"the {format_bytes(free)} free in {out}" if need > free else f"the {format_bytes(MAX_OUTPUT)} limit"
            )
            raise DataError(f"{h5}: its images need up to {format_bytes(need)}, over {where}")
        classes = next((c.classes for c in GALAXY10.values() if c.size == images.shape[1]), None)
        ra, dec = (_dataset(f, k, h5) for k in ("ra", "dec"))
        if not all(x is not None and x.shape == (n,) and x.dtype.kind in "iuf" for x in (ra, dec)):
            ra = dec = None  # positions missing or not numbers: each row is its own group
        block = max(1, min(BLOCK, BLOCK_BYTES // max(1, row_bytes)))
        rows = []
        unlabelled = 0
        for start in range(0, n, block):
            pixels_block = images[start : start + block]  # one block in memory, never the whole file
            labels = ans[start : start + block]
            position = [x[start : start + block] if x is not None else None for x in (ra, dec)]
            for j, (pixels, value) in enumerate(zip(pixels_block, labels, strict=True)):
                i = start + j
                if not np.isfinite(value) or value != int(value):
                    unlabelled += 1
                    continue
                k = int(value)
                label = classes[k] if classes and 0 <= k < len(classes) else f"class_{k}"
                buf = io.BytesIO()
                Image.fromarray(pixels).save(buf, format="PNG")
                rel = f"{label}/{i:05d}.png"
                (out / label).mkdir(exist_ok=True)
                (out / rel).write_bytes(buf.getvalue())
                row = {"file": rel, "label": label, "row": i}
                if position[0] is not None and position[1] is not None:
                    r, d = float(position[0][j]), float(position[1][j])
                    if np.isfinite(r) and np.isfinite(d):
                        row |= {"ra": f"{r:.6f}", "dec": f"{d:.6f}", "group": f"{r:.3f}{d:+.3f}"}  # ~4 arcsec
                rows.append(row | {"sha256": hashlib.sha256(buf.getvalue()).hexdigest()})
                if progress:
                    progress()
    if unlabelled:
        log.warning("%s: %d row(s) without a whole-number label were left out", h5, unlabelled)
    columns = ["file", "label", "row", "ra", "dec", "group", "sha256"]
    with (out / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[c for c in columns if any(c in r for r in rows)])
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)
