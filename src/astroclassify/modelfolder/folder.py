"""A model folder: ``model.onnx`` + ``model.json`` (+ card, plots, splits, detector).

``model.json`` carries everything inference needs: labels, input size, mean/std,
temperature and default test-time augmentation, plus the training provenance and the
held-out metrics shown in the model card. A name resolves to the version its home serves
(``versions.py``): a folder path, ``models_dir/<name>``, then the models bundled inside the
package; ``NAME@VERSION`` asks for one version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from astroclassify.errors import AstroClassifyError, ConfigError, ModelError, UnknownNameError
from astroclassify.imaging.tta import resolve_tta
from astroclassify.modelfolder.versions import (
    BUNDLED_VERSION,
    VersionInfo,
    check_version_id,
    current_version,
    is_home,
    list_versions,
    rollback,
    use_version,
    version_folder,
)

__all__ = [
    "Bundle",
    "ModelEntry",
    "available_models",
    "broken_models",
    "bundled_folder",
    "bundled_names",
    "is_packaged",
    "load_bundle",
    "model_home",
    "model_versions",
    "rollback_model",
    "use_model_version",
    "resolve_bundle",
]

BUNDLE_VERSION = 1


@dataclass(frozen=True)
class Bundle:
    path: Path
    name: str
    version: str
    arch: str
    labels: tuple[str, ...]
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    temperature: float = 1.0
    tta: str = "none"
    meta: dict = field(default_factory=dict, hash=False, compare=False)

    def temperature_for(self, tta: str | None = None) -> float:
        """The temperature fitted for ``tta`` (each TTA mode averages logits differently)."""
        mode = resolve_tta(tta, self.tta)
        return float(self.meta.get("temperatures", {}).get(mode, self.temperature))

    @property
    def onnx_path(self) -> Path:
        return self.path / "model.onnx"

    @property
    def sees(self) -> str:
        """What the network is shown of each picture, in words (model pages, the Grad-CAM caption)."""
        crop = float(self.meta.get("crop", 1.0))
        framing = self.meta.get("framing") or {}
        parts = [f"the central {crop:.0%} of each picture"] if crop < 1.0 else []
        if framing.get("method") == "object":
            where = "that crop" if parts else "the picture"
            parts.append(
                f"the main object found there, framed at {float(framing.get('scale', 6.0)):g}x its size "
                f"(all of {where} when no main object stands out)"
            )
        return ", then ".join(parts) or "the whole picture"

    def to_json(self) -> dict:
        return {
            "format": BUNDLE_VERSION,
            "name": self.name,
            "arch": self.arch,
            "labels": list(self.labels),
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "temperature": self.temperature,
            "tta": self.tta,
            **{k: v for k, v in self.meta.items() if k not in _CORE},
        }

    def save(self) -> None:
        (self.path / "model.json").write_text(json.dumps(self.to_json(), indent=2) + "\n")


_CORE = {"format", "name", "version", "arch", "labels", "image_size", "mean", "std", "temperature", "tta"}


def is_packaged(path: Path) -> bool:
    """True for the models shipped inside the package (read-only by intent)."""
    root = Path(str(resources.files("astroclassify") / "bundled")).resolve()
    return Path(path).resolve().is_relative_to(root)


def bundled_names() -> list[str]:
    root = resources.files("astroclassify") / "bundled"
    return sorted(p.name for p in root.iterdir() if (p / "model.json").is_file())


def bundled_folder(name: str) -> Path | None:
    """The packaged model ``name`` (version 1 of that name), or None."""
    folder = Path(str(resources.files("astroclassify") / "bundled" / name))
    return folder if (folder / "model.json").is_file() else None


@dataclass(frozen=True)
class ModelEntry:
    """A model that can be used by name: bundled with the package or saved under the user's models."""

    name: str
    path: Path
    where: str  # "bundled" | "user"


def available_models(models_dir: Path | None = None) -> list[ModelEntry]:
    """Every trained model usable by name, sorted; a user model shadows a bundled one of the same name.

    Parameters
    ----------
    models_dir : Path, optional
        Folder of user models (``<name>/`` homes with versions, or plain model folders); None: bundled only.

    Returns
    -------
    list of ModelEntry
        ``name``, ``path`` (the version served) and ``where`` (``"bundled"`` or ``"user"``).
    """
    found = {n: ModelEntry(n, folder, "bundled") for n in bundled_names() if (folder := bundled_folder(n))}
    for name, served in _user_models(models_dir).items():
        if isinstance(served, Path):
            found[name] = ModelEntry(name, served, "bundled" if is_packaged(served) else "user")
        else:
            found.pop(name, None)  # a broken home shadows its bundled model: what it serves is unknown
    return [found[n] for n in sorted(found)]


def broken_models(models_dir: Path | None = None) -> dict[str, str]:
    """User models that cannot be served now (a pointer naming no version, an unreadable pointer), with why.

    The others serve on: ``/health`` and ``astroclassify models`` list these.
    """
    return {name: why for name, why in _user_models(models_dir).items() if isinstance(why, str)}


def _user_models(models_dir: Path | None) -> dict[str, Path | str]:
    out: dict[str, Path | str] = {}
    if models_dir is None or not models_dir.is_dir():
        return out
    for p in sorted(models_dir.iterdir()):
        if p.name.startswith(".") or not p.is_dir():
            continue
        try:
            served = _served(p, bundled_folder(p.name))
        except AstroClassifyError as exc:
            out[p.name] = str(exc)
            continue
        if served is not None:
            out[p.name] = served
    return out


def _served(folder: Path, bundled: Path | None) -> Path | None:
    """The model folder ``folder`` stands for: itself, or the version its pointer names."""
    if is_home(folder):
        current = current_version(folder, bundled=bundled)
        return None if current is None else version_folder(folder, current, bundled=bundled)
    return folder if (folder / "model.json").is_file() else None


def model_home(name_or_path: str | Path, *, models_dir: Path | None = None) -> tuple[Path, Path | None]:
    """Where new versions of a model are written, and the bundled model it starts from (if any).

    A folder path is its own home; a name is ``models_dir/<name>`` (a bundled name's first
    user version has the bundled model as its parent).
    """
    ref = str(name_or_path).split("@", 1)[0]
    path = Path(ref).expanduser()
    if path.is_dir() and ((path / "model.json").is_file() or is_home(path)):
        if path.parent.name == "versions" and is_home(path.parent.parent):
            return path.parent.parent, None  # a version folder: its home
        return path, None
    if models_dir is None or "/" in ref or path.is_absolute():
        raise ConfigError(f"{name_or_path}: not a model folder, and no models folder to keep a model named so")
    return models_dir / ref, bundled_folder(ref)


def resolve_bundle(name_or_path: str | Path, *, models_dir: Path | None = None) -> Path:
    """A model folder: the path given (or the version its home serves), else ``models_dir/<name>``, else bundled.

    ``NAME@VERSION`` (or ``FOLDER@VERSION``) gives that version, served or not.
    """
    ref, _, version = str(name_or_path).partition("@")
    if version:
        check_version_id(version)  # an id, never a path
    path = Path(ref).expanduser()
    if is_home(path):  # the pointer wins over files a folder kept from before versions
        return version_folder(path, version) if version else _served_or_fail(path, None)
    if (path / "model.json").is_file():
        if version:
            raise UnknownNameError(f"{path} is one model folder, without versions; drop @{version}")
        return path
    if path.is_dir() or path.suffix == ".onnx":
        raise ModelError(f"{path}: not a model folder (expected model.json and model.onnx inside)")
    bundled = bundled_folder(ref)
    user = models_dir / ref if models_dir is not None and ref else None
    if user is not None and is_home(user):
        return version_folder(user, version, bundled=bundled) if version else _served_or_fail(user, bundled)
    if user is not None and (user / "model.json").is_file():
        return resolve_bundle(user if not version else f"{user}@{version}")
    if bundled is not None:
        if version and version != BUNDLED_VERSION:
            raise UnknownNameError(f"version {version!r} of {ref} does not exist (versions: {BUNDLED_VERSION})")
        return bundled
    known = bundled_names()
    import difflib

    close = difflib.get_close_matches(ref, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownNameError(
        f"unknown model {ref!r}{hint} (bundled: {', '.join(known) or 'none'}; or give a model folder path)"
    )


def _served_or_fail(home: Path, bundled: Path | None) -> Path:
    served = _served(home, bundled)
    if served is None:
        raise ModelError(f"{home}: no version is served yet (see `astroclassify models`)")
    return served


def _version_of(path: Path) -> str | None:
    if path.parent.name == "versions" and is_home(path.parent.parent):
        return path.name
    if is_packaged(path):
        return BUNDLED_VERSION
    return None


def load_bundle(name_or_path: str | Path, *, models_dir: Path | None = None) -> Bundle:
    """A model's description, by name (``NAME`` or ``NAME@VERSION``) or folder path.

    A model found by name keeps that name, even where its ``model.json`` says another (a
    copied or renamed folder): the name a user asks for is the name results are stored under.
    Its version is the version folder's id (``1`` for a bundled model).
    """
    path = resolve_bundle(name_or_path, models_dir=models_dir)
    ref = str(name_or_path).partition("@")[0]
    by_name = not Path(ref).expanduser().exists()
    try:
        data = json.loads((path / "model.json").read_text())
        bundle = Bundle(
            path=path,
            name=ref if by_name else data["name"],
            version=_version_of(path) or str(data.get("version", "0")),
            arch=data["arch"],
            labels=tuple(data["labels"]),
            image_size=int(data["image_size"]),
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            temperature=float(data.get("temperature", 1.0)),
            tta=data.get("tta", "none"),
            meta=data,
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}/model.json is unreadable or incomplete ({exc})") from None
    if not bundle.onnx_path.is_file():
        raise ModelError(f"{path}: model.onnx is missing")
    return bundle


def model_versions(name_or_path: str | Path, *, models_dir: Path | None = None) -> list[VersionInfo]:
    """Every version of a model, oldest first, the one served marked ``current`` (a bundled model is version 1)."""
    home, bundled = model_home(name_or_path, models_dir=models_dir)
    if not is_home(home):
        if bundled is not None:
            return list_versions(home, bundled=bundled)
        folder = resolve_bundle(name_or_path, models_dir=models_dir)
        return [VersionInfo(str(name_or_path), _version_of(folder) or "0", folder, True, made_by="plain folder")]
    return list_versions(home, bundled=bundled)


def use_model_version(ref: str, *, models_dir: Path | None = None) -> VersionInfo:
    """Serve ``NAME@VERSION`` from now on (a unique prefix of the version's id will do); returns it."""
    name, sep, version = ref.partition("@")
    if not sep or not version:
        raise ConfigError(f"give the version as NAME@VERSION (see `astroclassify models`); got {ref!r}")
    home, bundled = model_home(name, models_dir=models_dir)
    vid = use_version(home, version, bundled=bundled)
    return next(v for v in list_versions(home, bundled=bundled) if v.version == vid)


def rollback_model(name_or_path: str | Path, *, models_dir: Path | None = None) -> VersionInfo:
    """Serve the version served before the current one; returns it."""
    home, bundled = model_home(name_or_path, models_dir=models_dir)
    vid = rollback(home, bundled=bundled)
    return next(v for v in list_versions(home, bundled=bundled) if v.version == vid)
