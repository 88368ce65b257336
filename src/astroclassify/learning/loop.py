"""``learn``: one turn of the loop. Snapshot, clean, train a challenger, compare on gold, promote or keep.

Everything a turn decides is appended to ``<model home>/learn/decisions.jsonl`` with its
figures, so ``/models/NAME`` and ``astroclassify learn --history`` can show why a version
serves. A turn that finds nothing new, or a snapshot already judged against this champion,
trains nothing: the loop can run on a schedule.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as dt
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astroclassify.config import BUNDLED_ONLY, Folders
from astroclassify.errors import AstroClassifyError, ConfigError, ModelError
from astroclassify.learning.cleaning import Suspect, find_label_errors
from astroclassify.learning.promotion import Comparison, compare_paired, ensure_gold
from astroclassify.learning.review import flag_contradictions, settled_labels
from astroclassify.learning.snapshot import Snapshot, gather_labels, write_snapshot
from astroclassify.preparation.splits import SplitAssignment, read_splits, write_splits
from astroclassify.progress import Progress, silent
from astroclassify.store import Store

__all__ = ["LearnResult", "ModelHistory", "learn", "learn_history", "model_history"]

log = logging.getLogger(__name__)

DECISIONS = "decisions.jsonl"
REFERENCE_PER_CLASS = 60  # trusted training images per class that anchor the out-of-fold check


@dataclass
class LearnResult:
    """What one turn of the loop did, and why."""

    model: str
    decision: str  # promoted | kept | paused | nothing new | already decided | dry run | failed
    message: str
    champion: str
    challenger: str | None = None
    snapshot: Snapshot | None = None
    suspects: list[Suspect] = field(default_factory=list)
    comparison: Comparison | None = None
    gold: int = 0
    seconds: float = 0.0
    kind: str = ""  # the challenger: "head" (last layer refitted) or "full" (fine-tuned)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "decision": self.decision,
            "message": self.message,
            "champion": self.champion,
            "challenger": self.challenger,
            "snapshot": self.snapshot.id if self.snapshot else None,
            "labels": self.snapshot.counts if self.snapshot else {},
            "left_out": self.snapshot.left_out if self.snapshot else {},
            "suspects": [
                {"source": s.row.source, "label": s.row.label, "predicted": s.predicted, "p_label": s.p_label}
                for s in self.suspects
            ],
            "gold": self.gold,
            "comparison": self.comparison.to_dict() if self.comparison else None,
            "challenger_kind": self.kind or None,
            "seconds": round(self.seconds, 1),
        }

    def __repr__(self) -> str:
        return f"LearnResult({self.model}: {self.decision}: {self.message})"


def learn(
    name: str | Path,
    *,
    store: Store | None = None,
    imported: Sequence[str | Path] = (),
    folders: Folders = BUNDLED_ONLY,
    max_minutes: float = 0.0,
    epochs: int = 0,
    kind: str = "auto",
    dry_run: bool = False,
    clean: bool = True,
    notifiers: Sequence[Any] = (),
    progress: Progress = silent,
) -> LearnResult:
    """One turn of the loop for model ``name``; the served version changes only on a promotion.

    Parameters
    ----------
    name : str or Path
        The champion: a model name (bundled or the user's) or a model home folder.
    store : Store, optional
        Where corrections and archive categories come from.
    imported : sequence of folders
        Labelled dataset folders from elsewhere (another installation's export).
    max_minutes : float
        Training budget; a challenger not finished in time is kept as a checkpoint and the
        next turn resumes it.
    epochs : int
        Override the champion's epoch count (0: its own recipe).
    kind : {"auto", "head", "full"}
        The challenger: ``head`` keeps the champion's encoder and refits its last layer
        (about a minute; ``training/refit.py``), ``full`` fine-tunes the whole network with the
        champion's recipe; ``auto`` takes ``head`` when ``max_minutes`` is shorter than the
        champion's own training took, else ``full``. The same gold-set gate judges both and the
        decision records which it was.
    dry_run : bool
        Gather, freeze nothing, train nothing: say what a turn would do.
    clean : bool
        Keep suspected label errors out of training (``False``: train on every gathered
        label; the gold set alone then stands between noisy labels and the users).
    notifiers : sequence of Notifier
        Told of a promotion, a refused challenger and a failed run.
    """
    from astroclassify.inference.predictor import OnnxPredictor
    from astroclassify.modelfolder.folder import _version_of, load_bundle, model_home, resolve_bundle
    from astroclassify.modelfolder.versions import adopt

    started = time.perf_counter()
    alerting = _Alerting(store, tuple(notifiers))
    home, bundled = model_home(name, models_dir=folders.models_dir)
    with _one_turn(home, name):
        adopt(home)  # a plain model folder becomes version 1 of its home now, not under the champion's feet
        champion_path = resolve_bundle(name, models_dir=folders.models_dir)
        champion = _version_of(champion_path) or champion_path.name
        bundle = load_bundle(champion_path)
        recipe = bundle.meta.get("training", {}).get("config")
        challenger_kind = _challenger_kind(kind, max_minutes, bundle.meta.get("training", {}))  # fails before any work
        if not recipe:
            raise ModelError(f"{champion_path}: the model records no training recipe, so a challenger cannot repeat it")
        learn_dir = home / "learn"
        gold = _gold(learn_dir, champion_path, dry_run)
        result = LearnResult(str(name), "", "", champion, gold=len(gold))

        settled = settled_labels(home)
        result.gold += len(settled)
        gold_known = {g.sha256: g.label for g in gold} | settled
        rows, left = gather_labels(store, bundle.labels, imported=imported, gold=gold_known)
        split_rows = read_splits(champion_path / "splits.csv")
        excluded = {r.sha256 for r in split_rows} | set(gold_known)
        trained_as = {r.sha256: r.label for r in split_rows if r.split != "test"}
        contradicting = {r.sha256 for r in rows if r.sha256 in trained_as and trained_as[r.sha256] != r.label}
        if contradicting and not dry_run:
            flag_contradictions(home, rows, trained_as)
        dropped = Counter(
            "gold image (never trains)"
            if r.sha256 in gold_known
            else "contradicts its training label: sent to review"
            if r.sha256 in contradicting
            else "already in the champion's data"
            for r in rows
            if r.sha256 in excluded
        )
        rows = [r for r in rows if r.sha256 not in excluded]
        copies = _gold_copies(rows, learn_dir, champion_path, gold, home, recipe, folders.data_dir)
        dropped["copy of a gold or validation image (never trains)"] += len(copies)
        rows = [r for i, r in enumerate(rows) if i not in copies]
        dropped = +dropped
        left = dict(Counter(left) + dropped)
        if not rows:
            return _finish(
                result, "nothing new", f"no new labels ({_left(left)})", started, None if dry_run else learn_dir, None
            )
        snapshot = write_snapshot(
            rows, learn_dir / "snapshots", tag=champion, left_out=left
        )  # a dry run keeps it too: labels, not a decision
        result.snapshot = snapshot
        if any(
            d.get("snapshot") == snapshot.id and d.get("champion") == champion and d["decision"] in ("promoted", "kept")
            for d in learn_history(home)
        ):
            return _finish(
                result, "already decided", f"snapshot {snapshot.id} was judged against {champion}", started, None, None
            )

        if clean:
            predictor = OnnxPredictor(champion_path, detector=False)
            result.suspects = find_label_errors(predictor, rows, _reference(champion_path, recipe, folders.data_dir))
            del predictor  # its session's memory, not held through training and judging
        _write_suspects(snapshot.path / "suspects.csv", result.suspects)
        doubted = {s.row.sha256 for s in result.suspects}
        kept = [r for r in rows if r.sha256 not in doubted]
        plan = (
            f"{len(rows)} new labels ({_counts(snapshot.counts)}), {len(result.suspects)} suspected label error{'' if len(result.suspects) == 1 else 's'} kept out; "
            f"a challenger ({recipe.get('model')}, {_kind_words(challenger_kind)}) "
            f"trained on {len(kept)} of them plus the champion's data; judged on {len(gold)} gold images"
        )
        if dry_run:
            return _finish(result, "dry run", plan, started, None, None)
        if not kept:
            return _finish(
                result,
                "nothing new",
                f"every new label is a suspected error ({len(rows)})",
                started,
                learn_dir,
                alerting,
            )

        training = write_snapshot(kept, learn_dir / "training", tag=f"clean:{snapshot.id}")
        # The turn's budget: what gathering, snapshot and cleaning left of it goes to training.
        budget = max(1e-6, max_minutes - (time.perf_counter() - started) / 60) if max_minutes > 0 else 0.0
        cfg = _challenger_config(recipe, home, training, champion_path, gold, folders.data_dir, budget, epochs)
        result.kind = challenger_kind
        from astroclassify.training.train import TrainingPaused, train

        try:
            if result.kind == "head":
                from astroclassify.training.refit import refit_head

                roots = _data_roots(recipe, folders.data_dir) | {training.path.name: training.path}
                refit = refit_head(
                    champion_path,
                    home,
                    _train_rows(Path(cfg.splits), roots),
                    sources=list(cfg.data),
                    splits=Path(cfg.splits),
                    bundled=bundled,
                    data_dir=folders.data_dir,
                    progress=progress,
                )
                challenger_path = refit.path
            else:
                challenger_path = train(cfg, progress, serve=False).path
        except TrainingPaused as exc:
            return _finish(result, "paused", f"{plan}. {exc}", started, learn_dir, None)
        except AstroClassifyError as exc:
            _finish(result, "failed", f"{plan}. Training failed: {exc}", started, learn_dir, alerting)
            raise
        trained = load_bundle(challenger_path)
        result.challenger = trained.path.name
        result.comparison = _compare(champion_path, trained.path, gold, recipe, folders, home)
        if result.comparison.promote:
            from astroclassify.modelfolder.versions import use_version

            use_version(home, trained.path.name, bundled=bundled)
            return _finish(
                result,
                "promoted",
                f"{trained.path.name} serves: {result.comparison.reason}",
                started,
                learn_dir,
                alerting,
            )
        return _finish(result, "kept", f"{champion} stays: {result.comparison.reason}", started, learn_dir, alerting)


@contextlib.contextmanager
def _one_turn(home: Path, name: str | Path) -> Iterator[None]:
    """One turn per model at a time: two would share the staging folders, the checkpoint and the pointer."""
    from filelock import FileLock, Timeout

    (home / "learn").mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(home / "learn" / ".turn.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ModelError(f"{name}: another turn of learn is running for this model; try again when it ends") from None
    try:
        yield
    finally:
        lock.release()


def learn_history(home: Path) -> list[dict]:
    """Every decision the loop recorded for a model home, oldest first."""
    path = home / "learn" / DECISIONS
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash mid-write: the rest still reads
    return out


@dataclass(frozen=True)
class ModelHistory:
    """A model's versions (oldest first, with what each trained on) and the loop's decisions (newest first)."""

    versions: list[dict]
    decisions: list[dict]
    pending_reviews: int = 0  # suspected label errors waiting for a person


def model_history(name: str | Path, *, models_dir: Path | None = None, limit: int = 50) -> ModelHistory:
    """What ``/models/NAME`` shows under History: every version and every decision the loop recorded."""
    from astroclassify.modelfolder.folder import model_home, model_versions

    try:
        home, _ = model_home(name, models_dir=models_dir)
    except AstroClassifyError:  # a model outside any models folder has no home to keep a history in
        return ModelHistory([], [])
    versions = []
    for v in model_versions(name, models_dir=models_dir):
        try:
            training = json.loads((v.path / "model.json").read_text()).get("training", {}).get("config", {})
        except (OSError, ValueError):
            training = {}
        sources = [_source_name(str(d)) for d in training.get("data", [])]
        versions.append(dataclasses.asdict(v) | {"path": str(v.path), "trained_on": sources})
    from astroclassify.learning.review import pending_reviews

    decisions = [d for d in learn_history(home) if d.get("decision") not in ("nothing new", "already decided")]
    return ModelHistory(versions, decisions[::-1][:limit], len(pending_reviews(home)))


def _source_name(source: str) -> str:
    """A collection's name, a folder's name, or ``snapshot <id>`` for what the loop gathered."""
    path = Path(source)
    return (
        f"snapshot {path.name}" if path.parent.name == "training" and path.parent.parent.name == "learn" else path.name
    )


def _gold(learn_dir: Path, champion: Path, dry_run: bool) -> list[SplitAssignment]:
    if dry_run and not (learn_dir / "gold.csv").is_file():
        return [r for r in read_splits(champion / "splits.csv") if r.split == "test"]
    return ensure_gold(learn_dir, champion)


KINDS = ("auto", "head", "full")


def _challenger_kind(kind: str, max_minutes: float, training: dict) -> str:
    """``auto``: refit the head when the budget is shorter than the champion's own training took."""
    if kind not in KINDS:
        raise ConfigError(f"--kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if kind != "auto":
        return kind
    took = float(training.get("seconds") or 0.0) / 60
    return "head" if max_minutes > 0 and (not took or max_minutes < took) else "full"


def _kind_words(kind: str) -> str:
    return "its last layer refitted on the champion's encoder" if kind == "head" else "fine-tuned"


def _train_rows(splits: Path, roots: dict[str, Path]) -> list[tuple[Path, str]]:
    """The training rows of a challenger's split file, where their images are found here."""
    out = []
    for r in read_splits(splits):
        dataset, _, rel = r.key.partition("/")
        if r.split == "train" and dataset in roots and (roots[dataset] / rel).is_file():
            out.append((roots[dataset] / rel, r.label))
    return out


def _left(left: dict[str, int]) -> str:
    return "; ".join(f"{reason}: {n}" for reason, n in sorted(left.items())) or "none gathered"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def _data_roots(recipe: dict, data_dir: Path | None) -> dict[str, Path]:
    """The champion's data folders found here, by the name its split keys start with."""
    from astroclassify.preparation.collections import resolve_data

    roots = {}
    for source in recipe.get("data", []):
        try:
            root = resolve_data(source, data_dir=data_dir)
        except AstroClassifyError:
            continue
        roots[root.resolve().name] = root
    return roots


def _gold_copies(rows, learn_dir, champion, gold, home, recipe, data_dir) -> set[int]:
    """Indices of ``rows`` that copy an image the gate judges on: gold (frozen or settled) or validation.

    Bytes alone would let a re-encoded copy of a gold image, delivered by sync or an import,
    train on the set that judges the challenger; the split file is public, so copies may also
    be mirrored, turned or cropped (thumbnails under the eight symmetries, then keypoints).
    """
    from astroclassify.imaging.decode import decode_pil
    from astroclassify.learning.promotion import gold_fingerprints, gold_keypoints, image_print
    from astroclassify.learning.review import gold_extra
    from astroclassify.preparation.splits import copies_of

    if not rows:
        return set()
    roots = _data_roots(recipe, data_dir)
    judged = [*gold, *(r for r in read_splits(champion / "splits.csv") if r.split == "val")]
    files = []
    for g in judged:
        dataset, _, rel = g.key.partition("/")
        if dataset in roots:
            files.append((g.sha256, roots[dataset] / rel))
    extra = gold_extra(home)
    if extra is not None:
        with (extra / "manifest.csv").open(newline="") as fh:
            files += [(r["sha256"], extra / r["file"]) for r in csv.DictReader(fh)]
    references, unreadable = gold_fingerprints(learn_dir, files)
    if unreadable:
        log.warning(
            "%d gold image(s) not found here: new labels are checked against the other %d", unreadable, len(references)
        )
    readable = [(i, p) for i, r in enumerate(rows) if (p := image_print(r.path)) is not None]
    found = {readable[j][0] for j in copies_of([p for _, p in readable], references)}
    index = gold_keypoints(learn_dir, files)
    for i, _ in readable:
        if i not in found and index.match(decode_pil(rows[i].path).convert("RGB")) is not None:
            found.add(i)
    return found


def _reference(champion: Path, recipe: dict, data_dir: Path | None) -> list[tuple[Path, str]]:
    """Up to ``REFERENCE_PER_CLASS`` of the champion's training images per class, where they are found here."""
    roots = _data_roots(recipe, data_dir)
    taken: Counter[str] = Counter()
    out = []
    for r in read_splits(champion / "splits.csv"):
        dataset, _, rel = r.key.partition("/")
        if r.split != "train" or dataset not in roots or taken[r.label] >= REFERENCE_PER_CLASS:
            continue
        path = roots[dataset] / rel
        if path.is_file():
            out.append((path, r.label))
            taken[r.label] += 1
    return out


def _write_suspects(path: Path, suspects: list[Suspect]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "label", "predicted", "confidence", "p_label", "kind", "source", "sha256"])
        for s in suspects:
            w.writerow(
                [
                    f"images/{s.row.sha256[:16]}{s.row.path.suffix.lower()}",
                    s.row.label,
                    s.predicted,
                    s.confidence,
                    s.p_label,
                    s.row.kind,
                    s.row.source,
                    s.row.sha256,
                ]
            )


def _challenger_config(recipe, home, training, champion, gold, data_dir, max_minutes, epochs):
    """The champion's recipe on its data plus the cleaned snapshot; the gold images stay in test."""
    from astroclassify.training.config import TrainConfig

    known = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in recipe.items() if k in known})
    gold_sha = {g.sha256 for g in gold}
    rows = [
        dataclasses.replace(r, split="test") if r.sha256 in gold_sha else r
        for r in read_splits(champion / "splits.csv")
    ]
    with (training.path / "manifest.csv").open(newline="") as fh:
        for i, m in enumerate(csv.DictReader(fh)):
            rows.append(
                SplitAssignment(
                    f"{training.path.name}/{m['file']}",
                    m["sha256"],
                    m["label"],
                    m["release"],
                    "train",
                    i % max(cfg.folds, 1),
                )
            )
    splits = training.path / "splits.csv"
    write_splits(splits, rows)
    return dataclasses.replace(
        cfg,
        data=(*cfg.data, str(training.path)),
        out=str(home),
        splits=str(splits),
        data_dir=str(data_dir) if data_dir else "",
        max_minutes=max_minutes,
        epochs=epochs or cfg.epochs,
        extra={"command": f"astroclassify learn {home.name}"},
    )


def _compare(champion: Path, challenger: Path, gold, recipe, folders: Folders, home: Path) -> Comparison:
    """Both models on the gold set, paired by image: the frozen split of the champion's data, and
    every image a person settled on the review page."""
    import numpy as np

    from astroclassify.evaluation.evaluate import evaluate
    from astroclassify.learning.review import gold_extra

    keys = {g.key: (g.label, g.group) for g in gold}
    parts = [(list(recipe.get("data", [])), "test")]
    extra = gold_extra(home)
    if extra is not None:
        parts.append(([str(extra)], "all"))
        with (extra / "manifest.csv").open(newline="") as fh:
            keys |= {f"{extra.name}/{r['file']}": (r["label"], r["release"]) for r in csv.DictReader(fh)}
    y, probs_a, probs_b, groups = [], [], [], []
    labels: list[str] = []
    for sources, split in parts:
        a = evaluate(champion, sources, split=split, folders=folders)
        b = evaluate(challenger, sources, split=split, folders=folders)
        labels = list(a.bundle.labels) if a.bundle else []
        if not b.bundle or list(b.bundle.labels) != labels:
            raise ModelError(f"the challenger's classes differ from the champion's ({labels}); not comparable")
        index_b = {k: i for i, k in enumerate(b.keys)}
        for i, k in enumerate(a.keys):
            if k in keys and k in index_b:
                y.append(labels.index(keys[k][0]))
                groups.append(keys[k][1])
                probs_a.append(a.probs[i])
                probs_b.append(b.probs[index_b[k]])
    if not y:
        raise ModelError("no gold image was scored by both models")
    # The validation split: trained on by neither (it chose the challenger's epoch and temperature).
    try:
        val_a = evaluate(champion, list(recipe.get("data", [])), split="val", folders=folders)
        val_b = evaluate(challenger, list(recipe.get("data", [])), split="val", folders=folders)
    except AstroClassifyError as exc:  # no validation split here: gold decides alone, and says so
        log.warning("no validation images to check the challenger on (%s)", exc)
        return compare_paired(y, np.array(probs_a), np.array(probs_b), groups, labels)
    index_b = {k: i for i, k in enumerate(val_b.keys)}
    shared = [(i, index_b[k]) for i, k in enumerate(val_a.keys) if k in index_b and val_a.y_true[i] in labels]
    validation = (
        [labels.index(val_a.y_true[i]) for i, _ in shared],
        np.array([val_a.probs[i] for i, _ in shared]).reshape(len(shared), len(labels)),
        np.array([val_b.probs[j] for _, j in shared]).reshape(len(shared), len(labels)),
    )
    return compare_paired(y, np.array(probs_a), np.array(probs_b), groups, labels, validation=validation)


@dataclass(frozen=True)
class _Alerting:
    """Where a turn's decision is told: through the store, delivered at least once like ingestion's alerts."""

    store: Store | None
    notifiers: tuple[Any, ...]

    def send(self, key: str, kind: str, message: str, payload: dict) -> None:
        if not self.notifiers:
            return
        if self.store is None:  # no store to keep it in (a library call without one): one try each
            for notifier in self.notifiers:
                try:
                    notifier.send({"alert_id": key, "kind": kind, "message": message, **payload})
                except Exception as exc:  # an alert that cannot go out never undoes the decision
                    log.warning("alert through %s failed: %s", getattr(notifier, "name", notifier), exc)
            return
        from astroclassify.net.alerts import deliver_pending
        from astroclassify.store.alerts import Alerts

        with self.store.session() as session:
            Alerts(session).raise_once(None, kind, message, payload, [n.name for n in self.notifiers], key=key)
            deliver_pending(session, list(self.notifiers))  # failures wait in the store for the next try


def _finish(
    result: LearnResult, decision: str, message: str, started: float, learn_dir: Path | None, alerting: _Alerting | None
) -> LearnResult:
    result.decision, result.message = decision, message
    result.seconds = time.perf_counter() - started
    log.info("learn %s: %s: %s", result.model, decision, message)
    if learn_dir is not None:
        learn_dir.mkdir(parents=True, exist_ok=True)
        record = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")} | result.to_dict()
        with (learn_dir / DECISIONS).open("a") as fh:
            fh.write(json.dumps(record) + "\n")
    if alerting is not None and decision in ("promoted", "kept", "failed"):
        key = f"learn:{result.model}:{result.snapshot.id if result.snapshot else '-'}:{decision}:{result.challenger or '-'}"
        alerting.send(key[:160], f"learn-{decision}", f"{result.model}: {message}", result.to_dict())
    return result
