"""Export corrected classifications as a dataset folder (``manifest.csv`` + images).

The newest correction of each image is its label; the model's own answer is kept as
metadata, so the export can train the next model or audit the current one.
"""

from __future__ import annotations

import csv
import datetime as dt
import shutil
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from astroclassify.errors import StoreError
from astroclassify.store import Store
from astroclassify.store.archive import IngestedItems
from astroclassify.store.tables import Classification

__all__ = ["ExportResult", "export_dataset", "export_feedback"]

COLUMNS = [
    "file",
    "label",
    "sha256",
    "predicted",
    "confidence",
    "model",
    "original_name",
    "classification_id",
    "comment",
]


INGESTED_COLUMNS = [
    "file",
    "label",
    "source",
    "key",
    "date",
    "title",
    "category",
    "credit",
    "license",
    "page_url",
    "image_url",
    "sha256",
    "predicted",
    "confidence",
]
LABEL_SOURCES = ("category", "feedback", "model")


@dataclass(frozen=True)
class ExportResult:
    """A dataset folder written: how many images, and how many were left out for want of a label."""

    out: Path
    written: int
    left_out: int
    labels: str


def export_dataset(
    store: Store,
    out: Path,
    *,
    labels: str = "category",
    source: str | None = None,
    category: str | None = None,
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> ExportResult:
    """Write ingested images as a dataset folder (``manifest.csv`` + ``images/``) that ``train`` reads.

    Parameters
    ----------
    store : Store
        The installation's store.
    out : Path
        The dataset folder to write.
    labels : {"category", "feedback", "model"}
        ``category``: the archive's category (a weak label); ``feedback``: the newest correction
        from the web app; ``model``: the model's answer, for review only (training on it would
        teach a model its own mistakes).
    source : str, optional
        Only items from this source (``"apod"``, ``"esahubble"``).
    category : str, optional
        Only items in this archive category.
    since, until : datetime.date, optional
        Only items published in this range (inclusive).

    Returns
    -------
    ExportResult
        ``out``, ``written``, and ``left_out`` (items without a label of that kind; duplicates
        are never written).
    """
    if labels not in LABEL_SOURCES:
        raise StoreError(f"labels must be one of {', '.join(LABEL_SOURCES)}; got {labels!r}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise StoreError(f"{out}: output folder exists and is not empty")
    uploads = store.images
    with store.session() as session:
        rows = IngestedItems(session).select(source=source, category=category, since=since, until=until)
        (out / "images").mkdir(parents=True, exist_ok=True)
        written = unlabelled = 0
        with (out / "manifest.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(INGESTED_COLUMNS)
            for row in rows:
                c = row.classification
                label = {
                    "category": row.category,
                    "feedback": c.feedback[-1].label if c is not None and c.feedback else "",
                    "model": c.label if c is not None else "",
                }[labels]
                src = uploads / (row.stored_name or "")
                if not label or not row.stored_name or not src.is_file():
                    unlabelled += 1
                    continue
                shutil.copyfile(src, out / "images" / row.stored_name)
                writer.writerow(
                    [
                        f"images/{row.stored_name}",
                        label,
                        row.source,
                        row.key,
                        row.date.isoformat() if row.date else "",
                        row.title,
                        row.category,
                        row.credit,
                        row.license,
                        row.page_url,
                        row.image_url or "",
                        row.sha256 or "",
                        c.label if c is not None else "",
                        f"{c.confidence:.4f}" if c is not None else "",
                    ]
                )
                written += 1
        return ExportResult(out, written, unlabelled, labels)


def export_feedback(store: Store, out: Path, *, owner: str | None = None) -> int:
    """Write the web app's corrected classifications as a dataset folder.

    Parameters
    ----------
    store : Store
        The installation's store.
    out : Path
        The folder: ``manifest.csv`` and ``images/``.
    owner : str, optional
        Only corrections made with this API key's name.

    Returns
    -------
    int
        The number of images written.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise StoreError(f"{out}: output folder exists and is not empty")
    query = select(Classification).options(selectinload(Classification.feedback)).where(Classification.feedback.any())
    if owner is not None:
        query = query.where(Classification.owner == owner)
    uploads = store.images
    with store.session() as session:
        rows = session.scalars(query.order_by(Classification.id)).all()
        (out / "images").mkdir(parents=True, exist_ok=True)
        written = 0
        with (out / "manifest.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(COLUMNS)
            for row in rows:
                source = uploads / row.stored_name
                if not source.is_file():
                    continue  # an upload removed by hand; the record stays in the database
                latest = row.feedback[-1]
                shutil.copyfile(source, out / "images" / row.stored_name)
                writer.writerow(
                    [
                        f"images/{row.stored_name}",
                        latest.label,
                        row.sha256,
                        row.label,
                        f"{row.confidence:.4f}",
                        f"{row.model_name} {row.model_version}",
                        row.filename,
                        row.id,
                        latest.comment,
                    ]
                )
                written += 1
        return written
