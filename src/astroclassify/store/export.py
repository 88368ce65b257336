"""Export corrected classifications as a dataset folder (``manifest.csv`` + images).

The newest correction of each image is its label; the model's own answer is kept as
metadata, so the export can train the next model or audit the current one.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from astroclassify.errors import StoreError
from astroclassify.store.tables import Classification

__all__ = ["export_feedback"]

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


def export_feedback(session: Session, uploads: Path, out: Path, *, owner: str | None = None) -> int:
    """Write ``out/manifest.csv`` and ``out/images/*``; returns the number of images."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise StoreError(f"{out}: output folder exists and is not empty")
    query = select(Classification).options(selectinload(Classification.feedback)).where(Classification.feedback.any())
    if owner is not None:
        query = query.where(Classification.owner == owner)
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
