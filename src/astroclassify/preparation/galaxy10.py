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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from astroclassify.errors import DataError

__all__ = ["GALAXY10", "H5Collection", "h5_to_dataset"]

BLOCK = 256  # rows read from the file at a time


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


def h5_to_dataset(h5: Path, out: Path, *, progress=None) -> int:
    """Write a Galaxy10-layout HDF5 file's rows into ``out`` as PNGs and a manifest; returns the row count.

    Raises
    ------
    DataError
        Not an HDF5 file, or not the layout (``images`` N x S x S x 3 uint8, ``ans`` N integers).
    """
    import h5py
    from PIL import Image

    try:
        f = h5py.File(h5, "r")
    except OSError as exc:
        raise DataError(f"{h5}: not a readable HDF5 file ({exc})") from None
    with f:
        images, ans = f.get("images"), f.get("ans")
        if not isinstance(images, h5py.Dataset) or not isinstance(ans, h5py.Dataset):
            raise DataError(f"{h5}: a Galaxy10 file holds `images` and `ans` arrays; found {sorted(f)}")
        n = images.shape[0]
        if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8 or ans.shape != (n,):
            raise DataError(
                f"{h5}: `images` must be N x S x S x 3 uint8 and `ans` N labels; got {images.shape}, {ans.shape}"
            )
        classes = next((c.classes for c in GALAXY10.values() if c.size == images.shape[1]), None)
        ra, dec = (f[k] if k in f and f[k].shape == (n,) else None for k in ("ra", "dec"))
        out.mkdir(parents=True, exist_ok=True)
        rows = []
        for start in range(0, n, BLOCK):
            block = images[start : start + BLOCK]  # one block in memory, never the whole file
            labels = ans[start : start + BLOCK]
            where = [x[start : start + BLOCK] if x is not None else None for x in (ra, dec)]
            for j, (pixels, k) in enumerate(zip(block, labels, strict=True)):
                i = start + j
                k = int(k)
                label = classes[k] if classes and 0 <= k < len(classes) else f"class_{k}"
                buf = io.BytesIO()
                Image.fromarray(pixels).save(buf, format="PNG")
                rel = f"{label}/{i:05d}.png"
                (out / label).mkdir(exist_ok=True)
                (out / rel).write_bytes(buf.getvalue())
                row = {"file": rel, "label": label, "row": i}
                if where[0] is not None and where[1] is not None:
                    r, d = float(where[0][j]), float(where[1][j])
                    row |= {"ra": f"{r:.6f}", "dec": f"{d:.6f}", "group": f"{r:.3f}{d:+.3f}"}  # ~4 arcsec
                rows.append(row | {"sha256": hashlib.sha256(buf.getvalue()).hexdigest()})
                if progress:
                    progress()
    columns = ["file", "label", "row", "ra", "dec", "group", "sha256"]
    with (out / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[c for c in columns if any(c in r for r in rows)])
        writer.writeheader()
        writer.writerows(rows)
    return n
