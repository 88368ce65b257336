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
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from astroclassify.config import DEFAULT_LIMITS, DecodeLimits
from astroclassify.errors import DataError, ImageDecodeError
from astroclassify.files.sizes import format_bytes
from astroclassify.sharing.contributions import LABEL, ImageIdentity, identify_image
from astroclassify.sharing.votes import aggregate_votes
from astroclassify.store import Store
from astroclassify.store.contributions import Contributions
from astroclassify.store.images import save_image
from astroclassify.store.tables import Contribution

__all__ = ["ExchangeResult", "export_collection", "import_collection"]

MAX_VOTES_PER_CELL = 10_000
MAX_VOTES_PER_IMAGE = 50  # like a peer's: a collection weighs as one source, its fractions kept
MAX_ROWS = 1_000_000  # Galaxy Zoo 2's main table has 240k rows
MAX_COLUMNS = 1_000
MAX_ROW_GROUPS = 10_000
MAX_GROUP_BYTES = 64 * 1024 * 1024  # uncompressed, the columns read
MAX_TABLE_BYTES = 1024 * 1024 * 1024
IMPORT_BATCH = 2_000  # rows per read and per commit
TEXT_CAPS = {"file": 1024, "credit": 2000, "licence": 255}  # characters kept of each text column


@dataclass
class ExchangeResult:
    """A collection written or read: images, votes, and rows refused with their reasons."""

    path: Path
    images: int = 0
    votes: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    image_ids: set[str] = field(default_factory=set, repr=False)

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
            if not r.consensus:  # a tie trains nothing: its counts stay in labels.parquet
                continue
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
    limits: DecodeLimits = DEFAULT_LIMITS,
    max_rows: int = MAX_ROWS,
    max_table_bytes: int = MAX_TABLE_BYTES,
) -> ExchangeResult:
    """Read a Galaxy Zoo style ``labels.parquet`` (and its images) into contributions; idempotent.

    Bounded before anything is decoded: the table's footer must declare at most ``max_rows``
    rows, ``MAX_COLUMNS`` columns and ``max_table_bytes`` uncompressed (a 12 KB file can hold
    gigabytes of zstd), and each row group at most ``MAX_GROUP_BYTES``. Rows are read a
    batch at a time, only the columns used, each image decoded once however many rows name it,
    at most ``MAX_VOTES_PER_IMAGE`` votes per image (larger counts are scaled, keeping their
    fractions), and committed every batch: an import killed midway keeps what it took and a
    re-run takes the rest.
    """
    import pyarrow.parquet as pq

    folder = Path(folder).resolve()
    source = folder / "labels.parquet"
    try:
        schema = pq.read_schema(source)
    except Exception as exc:  # pyarrow raises its own types for a missing or damaged file
        raise DataError(f"{source}: not a readable Parquet table ({type(exc).__name__})") from None
    columns = _import_columns(schema, question, source)
    try:
        # Text stays dictionary-encoded as read: a dictionary of 40 strings of 1 MB named by 3,000
        # rows is 40 MB in the footer and 3 GB once expanded (see ``_clipped``).
        parquet = pq.ParquetFile(source, read_dictionary=[c for c in columns if c in TEXT_CAPS])
        meta = parquet.metadata
    except Exception as exc:
        raise DataError(f"{source}: not a readable Parquet table ({type(exc).__name__})") from None
    _check_footer(meta, columns, schema.names, source, max_rows, max_table_bytes)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name or folder.name).strip("-")[:40] or "collection"
    origin = f"import-{slug}"
    result = ExchangeResult(folder)
    refused: dict[str, int] = {}
    count_column = re.compile(rf"^{re.escape(question)}_(.+)$")
    images: dict[Path, ImageIdentity | str] = {}  # each file decoded once: its identity, or why not
    with store.session() as session:
        repo = Contributions(session)
        held = repo.uids(origin)  # one query, not one per vote
        votes = Counter(u[: len(origin) + 17] for u in held)  # per image (origin-imageid), across runs
        try:
            for batch in parquet.iter_batches(batch_size=IMPORT_BATCH, columns=columns):
                for row in _clipped(batch).to_pylist():
                    reason = _import_row(
                        row, folder, origin, held, votes, images, count_column, repo, store, result, limits,
                        question,
                    )  # fmt: skip
                    if reason:
                        refused[reason] = refused.get(reason, 0) + 1
                session.commit()  # what is read stays read, should the import be stopped
        except (OSError, ValueError) as exc:  # a page that does not decode as its footer says
            session.commit()
            raise DataError(
                f"{source}: unreadable past row {result.rows} ({type(exc).__name__}); kept what was read"
            ) from None
    result.refused = refused
    result.images = len(result.image_ids)
    return result


def _import_columns(schema, question: str, source: Path) -> list[str]:  # a pyarrow Schema
    """The columns an import reads, each of a flat type whose decoded size is bounded (text is clipped)."""
    import pyarrow as pa

    names = schema.names
    if len(names) > MAX_COLUMNS:
        raise DataError(f"{source}: {len(names)} columns, over the {MAX_COLUMNS} a vote table may have")
    prefix = f"{question}_"
    wanted = [n for n in names if n in TEXT_CAPS]
    wanted += [n for n in names if n.startswith(prefix) and not n.endswith(("_fraction", "_total-votes"))]
    if "file" not in wanted:
        raise DataError(f"{source}: no 'file' column naming each image")
    for name in wanted:
        kind = schema.field(name).type
        plain = kind.value_type if pa.types.is_dictionary(kind) else kind
        if name in TEXT_CAPS:
            ok = pa.types.is_string(plain) or pa.types.is_large_string(plain) or pa.types.is_null(plain)
        else:
            ok = pa.types.is_integer(plain) or pa.types.is_floating(plain) or pa.types.is_null(plain)
        if not ok:
            want = "text" if name in TEXT_CAPS else "vote counts (integers)"
            raise DataError(f"{source}: column {name!r} is {kind}; expected {want}")
    return wanted


def _clipped(batch):  # a pyarrow RecordBatch
    """``batch`` with each text cut to what is stored of it, before any row is expanded.

    A dictionary column is cut in its dictionary (a few entries), so a value repeated on every
    row is never expanded at full length: decoded bytes stay rows x ``TEXT_CAPS``, whatever
    the encoding.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    arrays = []
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        cap = TEXT_CAPS.get(name)
        if cap is not None and pa.types.is_dictionary(column.type):
            dictionary = pc.utf8_slice_codeunits(column.dictionary, 0, cap)
            column = pa.DictionaryArray.from_arrays(column.indices, dictionary).dictionary_decode()
        elif cap is not None and not pa.types.is_null(column.type):
            column = pc.utf8_slice_codeunits(column, 0, cap)
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def _check_footer(meta, columns: list[str], names: list[str], source: Path, max_rows: int, max_bytes: int) -> None:
    """Refuse a table whose footer declares more rows, groups or uncompressed bytes than an import may take."""
    if meta.num_rows > max_rows:
        raise DataError(f"{source}: {meta.num_rows:,} rows, over the {max_rows:,} an import takes")
    if meta.num_row_groups > MAX_ROW_GROUPS:
        raise DataError(f"{source}: {meta.num_row_groups:,} row groups, over the {MAX_ROW_GROUPS:,} an import takes")
    used = {names.index(c) for c in columns}
    total = 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        size = sum(group.column(c).total_uncompressed_size for c in range(group.num_columns) if c in used)
        if size > MAX_GROUP_BYTES:
            raise DataError(
                f"{source}: a row group decodes to {format_bytes(size)}, over the {format_bytes(MAX_GROUP_BYTES)} limit"
            )
        total += size
    if total > max_bytes:
        raise DataError(
            f"{source}: the table decodes to {format_bytes(total)}, over the {format_bytes(max_bytes)} limit"
        )


def _scaled(counts: dict[str, int], cap: int) -> dict[str, int]:
    """Counts scaled to sum to at most ``cap``, fractions kept (largest remainders)."""
    total = sum(counts.values())
    if total <= cap:
        return counts
    exact = {a: n * cap / total for a, n in counts.items()}
    out = {a: int(v) for a, v in exact.items()}
    for a in sorted(exact, key=lambda a: out[a] - exact[a])[: cap - sum(out.values())]:
        out[a] += 1
    return out


def _import_row(
    row, folder, origin, held, votes, images, count_column, repo, store, result, limits, question
) -> str | None:
    result.rows += 1
    rel = str(row.get("file") or "")
    try:
        path = (folder / rel).resolve()
    except (OSError, ValueError):
        return "file outside the collection's folder"
    if not rel or folder not in path.parents:
        return "file outside the collection's folder"
    counts = {}
    for column, value in row.items():
        m = count_column.match(column)
        if not m:
            continue
        if not LABEL.match(m.group(1)):
            return "malformed answer name"
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_VOTES_PER_CELL:
            return f"vote count not an integer in 0..{MAX_VOTES_PER_CELL}"
        counts[m.group(1)] = value
    if not counts:
        return f"no {question}_<answer> vote counts"
    if path not in images:
        images[path] = _identify(path, limits)
    identity = images[path]
    if isinstance(identity, str):
        return identity
    image_id = identity.pixels_sha256[:16]
    key = f"{origin}-{image_id}"
    room = MAX_VOTES_PER_IMAGE - votes[key]
    if room <= 0:
        return f"over {MAX_VOTES_PER_IMAGE} votes on one image from this collection"
    counts = _scaled(counts, MAX_VOTES_PER_IMAGE)
    fresh = [
        (answer, k)
        for answer, n in sorted(counts.items())
        for k in range(n)
        if f"{origin}-{image_id}-{answer}-{k}" not in held
    ][:room]
    new = len(fresh)
    if fresh:  # the store is asked only when a vote is added: a million repeats of one row cost no query
        known = repo.by_digests(identity.sha256, identity.pixels_sha256)
        stored = known.stored_name if known is not None and (store.images / known.stored_name).is_file() else None
        if stored is None:
            stored = save_image(path.read_bytes(), identity.image_format, store.images)
    for answer, k in fresh:
        uid = f"{origin}-{image_id}-{answer}-{k}"
        held.add(uid)
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
                licence=str(row.get("licence") or ""),
                credit=str(row.get("credit") or ""),
                made_at=dt.datetime.now(dt.UTC),
                via=f"import:{folder.name}"[:255],
            )
        )
    votes[key] += new
    result.votes += new
    result.image_ids.add(key)
    return None


def _identify(path: Path, limits: DecodeLimits) -> ImageIdentity | str:
    """The image's identity, or why it is refused (each file is read once per import)."""
    if not path.is_file():
        return "image file missing"
    if path.stat().st_size > limits.max_bytes:
        return "image over the byte limit"
    try:
        return identify_image(path.read_bytes(), limits=limits)
    except ImageDecodeError:
        return "not an image we accept"
