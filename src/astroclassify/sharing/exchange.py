"""Labelled collections as Galaxy Zoo style Parquet: vote counts and fractions per image, images beside them.

Layout (as Galaxy Zoo's published tables): ``id_str``; for each answer of a question,
``{question}_{answer}`` (votes) and ``{question}_{answer}_fraction``; ``{question}_total-votes``;
plus ``file`` (the image, relative to the folder), ``consensus``, ``agreement``, ``credit`` and
``licence`` (provenance travels with every label).
A ``manifest.csv`` beside it makes the folder a dataset ``train`` reads, the fractions as soft
labels. Importing reads only what the table names inside its folder, checks each image, and
turns every vote count into that many votes (re-importing adds none).
"""

from __future__ import annotations

import csv
import datetime as dt
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from astroclassify.errors import DataError, ImageDecodeError
from astroclassify.imaging.decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from astroclassify.sharing.contributions import LABEL, identify_image
from astroclassify.sharing.votes import aggregate_votes
from astroclassify.store import Store
from astroclassify.store.contributions import Contributions
from astroclassify.store.images import save_image
from astroclassify.store.tables import Contribution

__all__ = ["ExchangeResult", "export_collection", "import_collection"]

MAX_VOTES_PER_CELL = 10_000


@dataclass
class ExchangeResult:
    """A collection written or read: images, votes, and rows refused with their reasons."""

    path: Path
    images: int = 0
    votes: int = 0
    refused: dict[str, int] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"ExchangeResult({self.path}: {self.images} images, {self.votes} votes, {sum(self.refused.values())} refused)"


def export_collection(
    store: Store, out: Path, *, question: str = "class", gold: dict[str, str] | None = None
) -> ExchangeResult:
    """Write every image with votes as ``out/labels.parquet`` + ``out/manifest.csv`` + ``out/images/``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise DataError(f"{out}: output folder exists and is not empty")
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = aggregate_votes(store, question=question, gold=gold)
    answers = sorted({a for r in rows for a in r.counts})
    table: dict[str, list] = {"id_str": [], "file": []}
    for a in answers:
        table[f"{question}_{a}"] = []
        table[f"{question}_{a}_fraction"] = []
    table |= {f"{question}_total-votes": [], "consensus": [], "agreement": [], "credit": [], "licence": []}
    for r in rows:
        src = store.images / r.stored_name
        name = f"images/{r.pixels_sha256[:16]}{src.suffix}"
        shutil.copyfile(src, out / name)
        table["id_str"].append(r.pixels_sha256)
        table["file"].append(name)
        for a in answers:
            table[f"{question}_{a}"].append(r.counts.get(a, 0))
            table[f"{question}_{a}_fraction"].append(r.fractions.get(a, 0.0))
        table[f"{question}_total-votes"].append(r.contributors)
        table["consensus"].append(r.consensus)
        table["agreement"].append(r.agreement)
        table["credit"].append("; ".join(r.credits))
        table["licence"].append("; ".join(r.licences))
    pq.write_table(pa.table(table), out / "labels.parquet")
    with (out / "manifest.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label", "release", *(f"{a}_fraction" for a in answers)])
        for i, r in enumerate(rows):
            w.writerow(
                [table["file"][i], r.consensus, r.pixels_sha256[:16], *(r.fractions.get(a, 0.0) for a in answers)]
            )
    return ExchangeResult(out, len(rows), sum(r.contributors for r in rows))


def import_collection(
    store: Store,
    folder: Path,
    *,
    question: str = "class",
    name: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ExchangeResult:
    """Read a Galaxy Zoo style ``labels.parquet`` (and its images) into contributions; idempotent."""
    import pyarrow.parquet as pq

    folder = Path(folder).resolve()
    source = folder / "labels.parquet"
    try:
        table = pq.read_table(source).to_pylist()
    except Exception as exc:  # pyarrow raises its own types for a missing or damaged file
        raise DataError(f"{source}: not a readable Parquet table ({type(exc).__name__})") from None
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name or folder.name).strip("-")[:40] or "collection"
    origin = f"import-{slug}"
    result = ExchangeResult(folder)
    refused: dict[str, int] = {}
    count_column = re.compile(rf"^{re.escape(question)}_(.+)$")
    with store.session() as session:
        repo = Contributions(session)
        held = repo.uids(origin)  # one query, not one per vote
        for row in table:
            reason = _import_row(
                row, folder, origin, held, count_column, repo, store, result, max_bytes, max_pixels, question
            )
            if reason:
                refused[reason] = refused.get(reason, 0) + 1
        session.commit()
    result.refused = refused
    return result


def _import_row(
    row, folder, origin, held, count_column, repo, store, result, max_bytes, max_pixels, question
) -> str | None:
    rel = str(row.get("file") or "")
    path = (folder / rel).resolve()
    if not rel or folder not in path.parents:
        return "file outside the collection's folder"
    if not path.is_file():
        return "image file missing"
    if path.stat().st_size > max_bytes:
        return "image over the byte limit"
    data = path.read_bytes()
    try:
        identity = identify_image(data, max_pixels=max_pixels, max_bytes=max_bytes)
    except ImageDecodeError:
        return "not an image we accept"
    counts = {}
    for column, value in row.items():
        m = count_column.match(column)
        if not m or column.endswith("_fraction") or column.endswith("_total-votes"):
            continue
        if not LABEL.match(m.group(1)):
            return "malformed answer name"
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_VOTES_PER_CELL:
            return f"vote count not an integer in 0..{MAX_VOTES_PER_CELL}"
        counts[m.group(1)] = value
    if not counts:
        return f"no {question}_<answer> vote counts"
    image_id = identity.pixels_sha256[:16]
    known = repo.by_pixels(identity.pixels_sha256)
    stored = known.stored_name if known is not None else None
    new = 0
    for answer, n in sorted(counts.items()):
        for k in range(n):
            uid = f"{origin}-{image_id}-{answer}-{k}"
            if uid in held:
                continue
            held.add(uid)
            if stored is None:
                stored = save_image(data, identity.image_format, store.images)
            repo.session.add(
                Contribution(
                    uid=uid,
                    origin=origin,
                    contributor=f"{origin}/{image_id}-{answer}-{k}",
                    question=question,
                    answer=answer,
                    image_sha256=identity.sha256,
                    pixels_sha256=identity.pixels_sha256,
                    stored_name=stored,
                    image_format=identity.image_format,
                    licence=str(row.get("licence") or "")[:255],
                    credit=str(row.get("credit") or "")[:2000],
                    made_at=dt.datetime.now(dt.UTC),
                    via=f"import:{folder.name}"[:255],
                )
            )
            new += 1
    result.images += 1
    result.votes += new
    return None
