"""Datasets as a Python API: ``load``, ``check``, ``split`` and ``fetch``.

A dataset is a folder with ``manifest.csv`` (``file,label`` + metadata) or one sub-folder
per label; named collections (``hubble-dso``, ``gz1-sdss``, ...) resolve to folders.

Examples
--------
>>> from astroclassify import datasets
>>> ds = datasets.load("hubble-dso")  # doctest: +SKIP
>>> ds.class_counts()  # doctest: +SKIP
{'galaxy': 189, 'nebula': 182}
>>> datasets.check("hubble-dso").ok  # doctest: +SKIP
True
"""

from __future__ import annotations

from pathlib import Path

from astroclassify.preparation.collections import fetch, resolve_data
from astroclassify.preparation.dataset import CheckReport, Dataset
from astroclassify.preparation.dataset import check_dataset as _check
from astroclassify.preparation.dataset import load_dataset as _load
from astroclassify.preparation.prepare import SplitResult
from astroclassify.preparation.prepare import split_datasets as split
from astroclassify.progress import Progress

__all__ = ["CheckReport", "Dataset", "SplitResult", "check", "fetch", "load", "split"]


def load(source: str | Path, *, data_dir: Path | None = None) -> Dataset:
    """Read a dataset's manifest (or its class folders) without decoding any image.

    Parameters
    ----------
    source : str or Path
        A dataset folder (``manifest.csv`` or one folder per class) or a collection name
        (``"hubble-dso"``, see ``astroclassify data list``).
    data_dir : Path, optional
        Where named collections are found; default: ``$ASTROCLASSIFY_DATA_DIR``.

    Returns
    -------
    Dataset
        ``samples`` (path, label, group, ...), ``labels``, ``class_counts()`` and
        ``problems``: the rows that could not be used, one line each with its reason.
    """
    return _load(resolve_data(source, data_dir=data_dir))


def check(
    source: str | Path,
    *,
    labels: set[str] | None = None,
    decode: bool = True,
    data_dir: Path | None = None,
    progress: Progress | None = None,
) -> CheckReport:
    """Validate a dataset: missing, corrupt and duplicate files, checksums, labels, class balance.

    Parameters
    ----------
    source : str or Path
        A dataset folder or collection name.
    labels : set of str, optional
        The allowed labels; others are reported.
    decode : bool
        Decode every image (``False`` is faster and finds fewer corrupt files).
    data_dir : Path, optional
        Where named collections are found.
    progress : callable, optional
        Called as ``progress(done, total)``.

    Returns
    -------
    CheckReport
        ``ok``, ``errors`` and ``warnings`` (one line each), and the loaded ``dataset``.
    """
    return _check(resolve_data(source, data_dir=data_dir), labels=labels, decode=decode, progress=progress)
