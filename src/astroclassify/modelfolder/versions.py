"""Versions of a named model: immutable folders named by their content, and a pointer to the one served.

A model's home folder (``$ASTROCLASSIFY_HOME/models/NAME``, or any folder given as ``--out``)::

    versions/<id>/      one complete model folder per version, never changed once written
    versions/<id>/VERSION.json   its parent, what made it, the config, the data snapshot, the scores
    pointer.json        {"current": <id>, "served": [<id>, ...]}: the version served, and the ones before it
    .draft-*/           a version being written (locked by its writer; a dead writer's is swept)
    checkpoint.pt, splits.csv, history.json   training's working files (resumable; not a version)

A version's id is the first 12 hex digits of the SHA-256 over its files (names and contents),
so writing the same model twice gives the same version. Every write (training, a card
rewritten, a detector fitted, an INT8 copy, an ensemble) makes a new version through
``draft``; ``use`` and ``rollback`` only move the pointer, so a promotion is undone in an
instant and nothing is lost. A bundled model is version ``1`` of its name: a user model of
the same name starts from it, and rolls back to it. A home with no pointer yet serves its
bundled model: a challenger written and refused, or a turn killed before the pointer moved,
leaves what is served as it was.

The pointer is one small JSON file replaced atomically (write, then rename), so a reader
sees the old version or the new one, never a mixture.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from astroclassify.errors import ConfigError, ModelError, UnknownNameError

try:
    import fcntl
except ImportError:  # Windows: drafts are not locked, so none is swept
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "BUNDLED_VERSION",
    "Draft",
    "VersionInfo",
    "adopt",
    "check_version_id",
    "content_id",
    "current_version",
    "draft",
    "is_home",
    "list_versions",
    "rollback",
    "served_versions",
    "sweep_dead_drafts",
    "use_version",
    "version_folder",
]

BUNDLED_VERSION = "1"
VERSIONS = "versions"
POINTER = "pointer.json"
VERSION_FILE = "VERSION.json"
ID_LENGTH = 12
VERSION_ID = re.compile(r"^(?:1|[0-9a-f]{1,64})$")  # the bundled "1", or a content id (or a prefix of one)
MAX_SERVED = 100  # the pointer's history: enough to roll back, not a file that grows forever
STALE_TMP_S = 60.0  # a temporary pointer older than this was left by a killed writer


def check_version_id(version: str) -> str:
    """``version`` if it is a version id; a path, a glob or anything else is refused, never resolved."""
    if not VERSION_ID.match(version):
        raise UnknownNameError(f"{version!r} is not a version id (hex digits from `astroclassify models`, or 1)")
    return version


@dataclass(frozen=True)
class VersionInfo:
    """One version of a model, as ``astroclassify models`` lists it."""

    name: str
    version: str
    path: Path
    current: bool
    parent: str | None = None
    made_by: str = ""
    created: str = ""
    scores: dict = field(default_factory=dict)


def is_home(folder: Path) -> bool:
    """True for a model's home folder (versions and a pointer), as opposed to one model folder."""
    return (folder / POINTER).is_file() or (folder / VERSIONS).is_dir()


def _read_pointer(home: Path) -> dict:
    try:
        pointer = json.loads((home / POINTER).read_text())
        served = [str(v) for v in pointer["served"]]
        if not served or str(pointer["current"]) != served[-1]:
            raise ValueError("current is not the last version served")
        if not all(VERSION_ID.match(v) for v in served):
            raise ValueError("it names something that is not a version id")
        return {"current": served[-1], "served": served}
    except FileNotFoundError:
        return {"current": None, "served": []}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{home / POINTER} is unreadable ({exc}); it names the version served") from None


def _write_pointer(home: Path, served: list[str]) -> None:
    """Replace the pointer atomically, with the home's file mode; nothing temporary is left, whatever fails."""
    served = [check_version_id(v) for v in served][-MAX_SERVED:]
    text = json.dumps({"current": served[-1], "served": served}, indent=1) + "\n"
    _sweep_stale(home)
    fd, tmp = tempfile.mkstemp(dir=home, prefix=".pointer-")
    try:
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), stat.S_IMODE(home.stat().st_mode) & 0o666)  # mkstemp's 0600 would hide it
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, home / POINTER)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _sweep_stale(home: Path) -> None:
    """Temporary pointers a killed writer left (a live one is milliseconds old)."""
    now = time.time()
    for tmp in home.glob(".pointer-*"):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > STALE_TMP_S:
                tmp.unlink()


def served_versions(home: Path, *, bundled: Path | None = None) -> list[str]:
    """The pointer's history, oldest first; with no pointer yet, the bundled model (``["1"]``) or nothing."""
    served = _read_pointer(home)["served"] if home.is_dir() else []
    return served or ([BUNDLED_VERSION] if bundled is not None else [])


def current_version(home: Path, *, bundled: Path | None = None) -> str | None:
    """The id of the version ``home`` serves: its pointer's, else ``1`` where a bundled model stands behind it.

    Every reader of "what is served" asks this one function, so ``predict``, ``serve``,
    ``models`` and ``models use``/``rollback`` cannot disagree.
    """
    served = served_versions(home, bundled=bundled)
    return served[-1] if served else None


def version_folder(home: Path, version: str, *, bundled: Path | None = None) -> Path:
    """The folder of ``version`` (a unique prefix of its id will do); ``1`` is the bundled model."""
    check_version_id(version)
    if version == BUNDLED_VERSION and bundled is not None:
        return bundled
    root = home / VERSIONS
    exact = root / version
    if version and (exact / "model.json").is_file():
        return exact
    found = sorted(p for p in root.glob(f"{version}*") if (p / "model.json").is_file())
    if len(found) == 1:
        return found[0]
    known = ", ".join(v.version for v in list_versions(home, bundled=bundled)) or "none"
    what = "is ambiguous" if found else "does not exist"
    raise UnknownNameError(f"version {version!r} of {home.name} {what} (versions: {known})")


def list_versions(home: Path, *, bundled: Path | None = None, name: str | None = None) -> list[VersionInfo]:
    """Every version in ``home``, oldest first; ``bundled`` adds the packaged model as version 1."""
    name = name or home.name
    current = current_version(home, bundled=bundled)
    rows = []
    if bundled is not None:
        rows.append(VersionInfo(name, BUNDLED_VERSION, bundled, current == BUNDLED_VERSION, made_by="bundled"))
    for folder in (home / VERSIONS).iterdir() if (home / VERSIONS).is_dir() else ():
        if not (folder / "model.json").is_file():
            continue
        info = _version_info(folder)
        rows.append(
            VersionInfo(
                name,
                folder.name,
                folder,
                folder.name == current,
                parent=info.get("parent"),
                made_by=str(info.get("made_by", "")),
                created=str(info.get("created", "")),
                scores=dict(info.get("scores") or {}),
            )
        )
    return sorted(rows, key=lambda r: (r.version != BUNDLED_VERSION, r.created, r.version))


def _version_info(folder: Path) -> dict:
    try:
        info = json.loads((folder / VERSION_FILE).read_text())
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


def use_version(home: Path, version: str, *, bundled: Path | None = None) -> str:
    """Serve ``version`` from now on (it becomes the newest entry of the pointer's history)."""
    folder = version_folder(home, version, bundled=bundled)
    vid = BUNDLED_VERSION if folder == bundled else folder.name
    served = served_versions(home, bundled=bundled)
    if served and served[-1] == vid:
        return vid
    home.mkdir(parents=True, exist_ok=True)
    _write_pointer(home, [*served, vid])
    return vid


def rollback(home: Path, *, bundled: Path | None = None) -> str:
    """Serve the version served before the current one; the current one stays, to ``use`` again."""
    served = served_versions(home, bundled=bundled)
    if len(served) < 2:
        now = f"serves version {served[-1]}" if served else "serves no version yet"
        raise ConfigError(f"{home.name} {now} and has no earlier version to roll back to")
    _write_pointer(home, served[:-1])
    return served[-2]


def content_id(folder: Path) -> str:
    """SHA-256 over the folder's files (relative names and bytes), ``VERSION.json`` aside: the version's name."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != VERSION_FILE):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        file_hash = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                file_hash.update(block)
        digest.update(file_hash.digest())
    return digest.hexdigest()[:ID_LENGTH]


@dataclass
class Draft:
    """A version being written: its folder, and, once published, its id."""

    path: Path
    home: Path
    parent: str | None
    made_by: str
    info: dict = field(default_factory=dict)  # config, data snapshot, scores: kept in VERSION.json
    version: str | None = None

    @property
    def published(self) -> Path:
        """The version's folder once the draft is published."""
        if self.version is None:
            raise ModelError("the draft is not published yet")
        return self.home / VERSIONS / self.version


WORKING_FILES = ("checkpoint.pt", "learn")  # training's and the loop's, kept beside the versions


def adopt(home: Path) -> str | None:
    """Make a plain model folder (written before versions existed) the first version of its own home.

    Its files move into ``versions/<id>/`` (training's checkpoint stays where training looks
    for it) and the pointer names that version. Returns the id, or None where there was
    nothing to adopt.
    """
    if not (home / "model.json").is_file() or is_home(home):
        return None
    staging = Path(tempfile.mkdtemp(dir=home, prefix=".adopt-"))
    for item in home.iterdir():
        if item != staging and not item.name.startswith(".") and item.name not in WORKING_FILES:
            os.replace(item, staging / item.name)
    d = Draft(staging, home, None, "adopted")
    vid = _publish(d, serve=True)
    shutil.rmtree(staging, ignore_errors=True)
    return vid


@contextmanager
def draft(
    home: Path,
    *,
    made_by: str,
    from_current: bool = False,
    bundled: Path | None = None,
    serve: bool = True,
    info: dict | None = None,
) -> Iterator[Draft]:
    """A folder to write the next version of ``home`` in; published when the block ends without error.

    ``from_current``: the draft starts as a copy of the version served (rewriting a card,
    fitting a detector); ``bundled``: the packaged model a home of that name starts from
    (version 1). The version served when the draft began is its parent. ``serve``: point at
    the new version (a retrain-and-promote loop writes a challenger without serving it). A
    draft that fails is removed and the served version is untouched.
    """
    home.mkdir(parents=True, exist_ok=True)
    adopt(home)
    parent = current_version(home, bundled=bundled)
    if from_current and parent is None:
        raise ModelError(f"{home}: no version to start from")
    sweep_dead_drafts(home)
    staging = Path(tempfile.mkdtemp(dir=home, prefix=DRAFT_PREFIX))
    held = _hold(staging)  # released by the kernel if this process dies, so a sweeper knows the draft is dead
    try:
        if from_current:
            assert parent is not None
            base = version_folder(home, parent, bundled=bundled)
            shutil.copytree(base, staging, dirs_exist_ok=True, copy_function=shutil.copyfile)
            (staging / VERSION_FILE).unlink(missing_ok=True)
        d = Draft(staging, home, parent, made_by, dict(info or {}))
        yield d
        d.version = _publish(d, serve=serve)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if held is not None:
            os.close(held)


DRAFT_PREFIX = ".draft-"
STALE_DRAFT_S = 60.0  # a draft is locked from its first millisecond; the age only guards mkdtemp-to-lock


def _hold(folder: Path) -> int | None:
    """An exclusive lock on ``folder`` held through an open descriptor (flock: freed when the holder dies)."""
    if fcntl is None:
        return None
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def sweep_dead_drafts(home: Path) -> list[Path]:
    """Remove the drafts of writers that died (``kill -9``, power loss) before publishing; return them.

    A live writer holds its draft's lock, so only a draft nobody holds and older than a
    minute goes: a turn killed mid-training leaves no folder that grows with every kill.
    """
    removed: list[Path] = []
    if fcntl is None:
        return removed
    now = time.time()
    for folder in home.glob(f"{DRAFT_PREFIX}*"):
        try:
            if not folder.is_dir() or now - folder.stat().st_mtime < STALE_DRAFT_S:
                continue
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # its writer is alive
            continue
        try:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        finally:
            os.close(fd)
    return removed


def _publish(d: Draft, *, serve: bool) -> str:
    if not (d.path / "model.json").is_file() or not (d.path / "model.onnx").is_file():
        raise ModelError(f"{d.home}: the new version has no model.json and model.onnx; nothing was published")
    vid = content_id(d.path)
    target = d.home / VERSIONS / vid
    if not (target / "model.json").is_file():  # the same content again is the same version
        info = {
            "version": vid,
            "parent": d.parent,
            "made_by": d.made_by,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),  # orders versions made in one second
        } | d.info
        (d.path / VERSION_FILE).write_text(json.dumps(info, indent=1, default=str) + "\n")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)  # a half-written folder from a crash
        os.replace(d.path, target)
    if serve:
        served = _read_pointer(d.home)["served"] or ([d.parent] if d.parent == BUNDLED_VERSION else [])
        if not served or served[-1] != vid:
            _write_pointer(d.home, [*served, vid])
    return vid
