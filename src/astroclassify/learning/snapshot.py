"""A snapshot of what the installation has learned: labelled images gathered into one dataset folder.

Sources, strongest first: a person's correction in the web app (newest per image), the
consensus of labels received from other installations and imported collections (``sync``,
``labels import``; only where it carries more than half the skill-weighted votes), labelled
dataset folders passed in, then archive categories (ESA/Hubble ``galaxies``, ``nebulae``:
weak labels). One image
(by file hash) gets the strongest label it has. A snapshot is content-addressed: its id is
the SHA-256 over its rows, so the same labels give the same folder, and every challenger
records the snapshot it trained on.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from astroclassify.preparation.dataset import load_dataset, sha256_file
from astroclassify.store import Store
from astroclassify.store.archive import IngestedItems
from astroclassify.store.classifications import Classifications

__all__ = ["LabelRow", "Snapshot", "archive_label", "gather_labels", "write_snapshot"]

KINDS = ("correction", "shared", "imported", "category")  # strongest first
SHARED_AGREEMENT = 0.5  # labels from other installations: the consensus must carry more than half the weight
COLUMNS = ["file", "label", "release", "sha256", "kind", "source"]


@dataclass(frozen=True)
class LabelRow:
    """One labelled image: where its bytes are, its label, and where the label came from."""

    path: Path
    label: str
    sha256: str
    kind: str  # correction | shared | imported | category
    source: str  # classification id, dataset/file, or archive key


@dataclass(frozen=True)
class Snapshot:
    """A content-addressed dataset folder (``manifest.csv`` + ``images/``) and what it holds."""

    id: str
    path: Path
    counts: dict[str, int]  # rows per kind
    labels: dict[str, int]  # rows per label
    left_out: dict[str, int] = field(default_factory=dict)  # reason -> rows

    def __repr__(self) -> str:
        kinds = ", ".join(f"{k} {v}" for k, v in self.counts.items()) or "no labels"
        return f"Snapshot({self.id}: {sum(self.counts.values())} images ({kinds}) at {self.path})"


def archive_label(category: str, classes: Sequence[str]) -> str | None:
    """An archive category as one of ``classes``: ``nebulae`` -> ``nebula``, ``star clusters`` -> ``star_cluster``."""
    name = category.strip().lower().replace(" ", "_").replace("-", "_")
    for plural, singular in (("ies", "y"), ("ae", "a"), ("s", "")):
        candidates = [name, name[: -len(plural)] + singular] if name.endswith(plural) else [name]
        for c in candidates:
            if c in classes:
                return c
    return None


def gather_labels(
    store: Store | None,
    classes: Sequence[str],
    *,
    imported: Sequence[str | Path] = (),
    gold: dict[str, str] | None = None,
) -> tuple[list[LabelRow], dict[str, int]]:
    """Every labelled image the installation knows, one row per file hash, strongest label first.

    Labels outside ``classes`` are left out (counted by reason): a challenger keeps the
    champion's classes, so its gold-set comparison is like for like. ``gold`` (file SHA-256
    -> label) weights the contributors of shared votes by their accuracy on gold images.
    """
    rows: list[LabelRow] = []
    left: Counter[str] = Counter()
    if store is not None:
        with store.session() as session:
            for c in Classifications(session).corrected():
                rows.append(
                    LabelRow(
                        store.images / c.stored_name,
                        c.feedback[-1].label,
                        c.sha256,
                        "correction",
                        f"classification:{c.id}",
                    )
                )
            for item in IngestedItems(session).categorised():
                if item.stored_name and item.sha256:
                    label = archive_label(item.category, classes)
                    if label is None:
                        left[f"archive category {item.category!r} is not a class"] += 1
                        continue
                    rows.append(LabelRow(store.images / item.stored_name, label, item.sha256, "category", item.key))
        rows += _shared(store, classes, left, gold or {})
    for folder in imported:
        ds = load_dataset(folder)
        left.update({f"{ds.name}: unreadable manifest row": len(ds.problems)} if ds.problems else {})
        for s in ds.samples:
            rows.append(LabelRow(s.path, s.label, s.meta.get("sha256") or sha256_file(s.path), "imported", s.key))
    best: dict[str, LabelRow] = {}
    for row in sorted(rows, key=lambda r: KINDS.index(r.kind)):
        if row.label not in classes:
            left[f"label {row.label!r} is not a class of the model"] += 1
        elif not row.path.is_file():
            left["image file missing"] += 1
        elif row.sha256 not in best:
            best[row.sha256] = row
        elif best[row.sha256].label != row.label:
            left[f"weaker label overruled ({row.kind})"] += 1
    return sorted(best.values(), key=lambda r: r.sha256), dict(left)


def write_snapshot(
    rows: Sequence[LabelRow], root: Path, *, tag: str = "", left_out: dict[str, int] | None = None
) -> Snapshot:
    """Write ``rows`` as ``root/<id>/``; the id is 12 hex digits of SHA-256 over the rows and ``tag``.

    An existing folder of that id is the same snapshot and is reused, once checked whole (its
    manifest lists exactly these rows and every image is there); a broken one is written again.
    Each writer stages in a folder of its own and renames it into place, so two writers never
    mix their files.
    """
    lines = [f"{r.sha256},{r.label},{r.kind}" for r in sorted(rows, key=lambda r: r.sha256)]
    sid = hashlib.sha256("\n".join([tag, *lines]).encode()).hexdigest()[:12]
    target = root / sid
    counts = dict(Counter(r.kind for r in rows))
    labels = dict(sorted(Counter(r.label for r in rows).items()))
    if not _whole(target, rows):
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{sid}.", suffix=".partial", dir=root))
        try:
            (staging / "images").mkdir()
            with (staging / "manifest.csv").open("w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(COLUMNS)
                for r in rows:
                    name = f"images/{r.sha256[:16]}{r.path.suffix.lower()}"
                    shutil.copyfile(r.path, staging / name)
                    w.writerow([name, r.label, r.sha256[:16], r.sha256, r.kind, r.source])
            meta = {"id": sid, "tag": tag, "counts": counts, "labels": labels, "left_out": left_out or {}}
            (staging / "snapshot.json").write_text(json.dumps(meta, indent=1) + "\n")
            if not _whole(target, rows):  # another writer may have finished the same snapshot meanwhile
                broken = root / f".{sid}.{uuid.uuid4().hex[:8]}.broken"
                with contextlib.suppress(FileNotFoundError):
                    target.rename(broken)
                shutil.rmtree(broken, ignore_errors=True)
                try:
                    staging.rename(target)
                except OSError:  # a writer renamed its own into place first: the same content
                    if not _whole(target, rows):
                        raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return Snapshot(sid, target, counts, labels, dict(left_out or {}))


def _whole(folder: Path, rows: Sequence[LabelRow]) -> bool:
    """Whether ``folder`` holds a finished snapshot of exactly ``rows``, every image present."""
    if not (folder / "snapshot.json").is_file() or not (folder / "manifest.csv").is_file():
        return False
    try:
        with (folder / "manifest.csv").open(newline="") as fh:
            listed = {(m["sha256"], m["label"]): m["file"] for m in csv.DictReader(fh)}
    except (OSError, KeyError, csv.Error):
        return False
    if set(listed) != {(r.sha256, r.label) for r in rows}:
        return False
    return all((folder / f).is_file() for f in listed.values())


def _shared(store: Store, classes: Sequence[str], left: Counter[str], gold: dict[str, str]) -> list[LabelRow]:
    """The consensus of votes from elsewhere (our own corrections are already rows of their own)."""
    from astroclassify.sharing.votes import aggregate_votes

    rows = []
    for v in aggregate_votes(store, gold=gold):
        if not v.from_elsewhere:
            continue
        if not v.consensus or v.agreement <= SHARED_AGREEMENT:
            left["shared votes without a clear consensus"] += 1
            continue
        path = store.images / v.stored_name
        rows.append(LabelRow(path, v.consensus, v.image_sha256, "shared", f"votes:{v.pixels_sha256[:16]}"))
    return rows
