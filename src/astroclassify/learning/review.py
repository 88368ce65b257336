"""A person's word on suspected label errors: confirm the label, or fix it. Each answer joins the gold set.

The loop keeps suspects out of training; a reviewer settles them on ``/models/NAME/review``.
A settled image is the strongest evidence there is, so it goes where it counts most: the
gold set (``learn/gold/``, a dataset folder), which judges every later challenger and never
trains one.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from astroclassify.errors import DataError, RecordNotFoundError
from astroclassify.learning.snapshot import LabelRow

__all__ = [
    "ReviewItem",
    "flag_contradictions",
    "gold_extra",
    "pending_reviews",
    "review_image",
    "review_label",
    "settled_labels",
    "training_label",
]

GOLD_DIR = "gold"
CONTRADICTIONS = "contradictions"  # under learn/snapshots/, listed on the review page like any suspects
CONTRADICTS = "correction contradicts the training label"
REVIEWS = "reviews.jsonl"
SHA = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ReviewItem:
    """One suspected label error waiting for a person."""

    sha256: str
    snapshot: str
    file: str  # relative to the snapshot folder
    label: str  # what the data said
    predicted: str  # what the out-of-fold model said
    p_label: float
    kind: str
    source: str


def _reviewed(learn_dir: Path) -> dict[str, dict]:
    path = learn_dir / REVIEWS
    out = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
                out[row["sha256"]] = row
            except (ValueError, KeyError):
                continue
    return out


def pending_reviews(home: Path) -> list[ReviewItem]:
    """Suspects of every snapshot not yet settled by a person, most doubtful first."""
    learn_dir = home / "learn"
    done = _reviewed(learn_dir)
    found: dict[str, ReviewItem] = {}
    for suspects in sorted((learn_dir / "snapshots").glob("*/suspects.csv")):
        with suspects.open(newline="") as fh:
            for r in csv.DictReader(fh):
                sha = r.get("sha256", "")
                if SHA.match(sha) and sha not in done and sha not in found:
                    found[sha] = ReviewItem(
                        sha,
                        suspects.parent.name,
                        r["file"],
                        r["label"],
                        r["predicted"],
                        float(r["p_label"]),
                        r["kind"],
                        r["source"],
                    )
    return sorted(found.values(), key=lambda it: it.p_label)


def flag_contradictions(home: Path, rows: Sequence[LabelRow], trained: dict[str, str]) -> int:
    """Send labels that contradict the label an image trained with to a person; returns how many are new.

    A correction of an image the champion trained on under another label is a suspected error
    in the training data, not "nothing new": it waits on the review page (the data's label
    against the correction), and a person's answer joins the gold set.
    """
    folder = home / "learn" / "snapshots" / CONTRADICTIONS
    listed = folder / "suspects.csv"
    held = set()
    if listed.is_file():
        with listed.open(newline="") as fh:
            held = {r.get("sha256", "") for r in csv.DictReader(fh)}
    new = [r for r in rows if r.sha256 in trained and trained[r.sha256] != r.label and r.sha256 not in held]
    if not new:
        return 0
    (folder / "images").mkdir(parents=True, exist_ok=True)
    fresh = not listed.is_file()
    with listed.open("a", newline="") as fh:
        w = csv.writer(fh)
        if fresh:
            w.writerow(["file", "label", "predicted", "confidence", "p_label", "kind", "source", "sha256"])
        for r in new:
            name = f"images/{r.sha256[:16]}{r.path.suffix.lower()}"
            shutil.copyfile(r.path, folder / name)
            w.writerow([name, trained[r.sha256], r.label, "", 0.0, CONTRADICTS, r.source, r.sha256])
    return len(new)


def training_label(model_folder: Path, sha256: str) -> str | None:
    """The label an image (by its file's digest) trained a model with, or None (never trained, or a test image)."""
    path = model_folder / "splits.csv"
    if not path.is_file():
        return None
    return _trained_labels(path, path.stat().st_mtime_ns).get(sha256)


@lru_cache(maxsize=8)
def _trained_labels(path: Path, mtime_ns: int) -> dict[str, str]:
    """A model's train and validation labels by digest, read once per splits file (a page view asks again)."""
    from astroclassify.preparation.splits import read_splits

    return {r.sha256: r.label for r in read_splits(path) if r.split != "test"}


def review_image(home: Path, sha256: str) -> Path:
    """The file of a pending suspect (by its digest; never a path from the request)."""
    for item in pending_reviews(home):
        if item.sha256 == sha256:
            path = home / "learn" / "snapshots" / item.snapshot / item.file
            if path.is_file():
                return path
    raise RecordNotFoundError("no pending review of that image")


def review_label(home: Path, sha256: str, label: str, classes: list[str], *, by: str = "web") -> ReviewItem:
    """Settle a suspect with ``label`` (the data's, the model's, or another class); it joins the gold set."""
    if label not in classes:
        raise DataError(f"{label!r} is not a class of this model ({', '.join(classes)})")
    item = next((it for it in pending_reviews(home) if it.sha256 == sha256), None)
    if item is None:
        raise RecordNotFoundError("no pending review of that image (settled already?)")
    learn_dir = home / "learn"
    gold = learn_dir / GOLD_DIR
    (gold / "images").mkdir(parents=True, exist_ok=True)
    src = learn_dir / "snapshots" / item.snapshot / item.file
    name = f"images/{sha256[:16]}{src.suffix}"
    shutil.copyfile(src, gold / name)
    manifest = gold / "manifest.csv"
    new = not manifest.is_file()
    with manifest.open("a", newline="") as fh:
        w = csv.writer(fh)
        if new:
            w.writerow(["file", "label", "release", "sha256", "reviewed_by"])
        w.writerow([name, label, sha256[:16], sha256, by])
    record = {
        "sha256": sha256,
        "label": label,
        "was": item.label,
        "predicted": item.predicted,
        "by": by,
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    with (learn_dir / REVIEWS).open("a") as fh:
        fh.write(json.dumps(record) + "\n")
    return item


def gold_extra(home: Path) -> Path | None:
    """The folder of images a person settled (part of the gold set), if any."""
    folder = home / "learn" / GOLD_DIR
    return folder if (folder / "manifest.csv").is_file() else None


def settled_labels(home: Path) -> dict[str, str]:
    """The images a person settled, by their file's SHA-256, with the label they gave."""
    folder = gold_extra(home)
    if folder is None:
        return {}
    with (folder / "manifest.csv").open(newline="") as fh:
        return {r["sha256"]: r["label"] for r in csv.DictReader(fh)}
