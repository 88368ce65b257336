"""A model bundle: a folder with ``model.onnx`` + ``model.json`` (+ card, plots, splits).

``model.json`` carries everything inference needs: labels, input size, mean/std,
temperature and default test-time augmentation, plus the training provenance and the
held-out metrics shown in the model card. Names resolve in this order: a folder path,
``$ASTROCLASSIFY_HOME/models/<name>``, then the models bundled inside the package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from astroclassify.config import default_models_dir
from astroclassify.errors import ModelError, UnknownNameError

__all__ = ["Bundle", "ModelEntry", "available_models", "bundled_names", "is_packaged", "load_bundle", "resolve_bundle"]

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
        mode = self.tta if tta is None else tta
        return float(self.meta.get("temperatures", {}).get(mode, self.temperature))

    @property
    def onnx_path(self) -> Path:
        return self.path / "model.onnx"

    def to_json(self) -> dict:
        return {
            "format": BUNDLE_VERSION,
            "name": self.name,
            "version": self.version,
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
        Folder of user models (``<name>/model.json``); default: ``$ASTROCLASSIFY_HOME/models``.

    Returns
    -------
    list of ModelEntry
        ``name``, ``path`` and ``where`` (``"bundled"`` or ``"user"``).
    """
    models_dir = default_models_dir() if models_dir is None else models_dir
    root = resources.files("astroclassify") / "bundled"
    found = {n: ModelEntry(n, Path(str(root / n)), "bundled") for n in bundled_names()}
    if models_dir.is_dir():
        for p in sorted(models_dir.iterdir()):
            if (p / "model.json").is_file():
                found[p.name] = ModelEntry(p.name, p, "user")
    return [found[n] for n in sorted(found)]


def resolve_bundle(name_or_path: str | Path, *, models_dir: Path | None = None) -> Path:
    """A model folder: the path given, else ``models_dir/<name>``, else the bundled model of that name."""
    path = Path(name_or_path).expanduser()
    if (path / "model.json").is_file():
        return path
    if path.is_dir() or path.suffix == ".onnx":
        raise ModelError(f"{path}: not a model folder (expected model.json and model.onnx inside)")
    name = str(name_or_path)
    user = (default_models_dir() if models_dir is None else models_dir) / name
    if (user / "model.json").is_file():
        return user
    packaged = Path(str(resources.files("astroclassify") / "bundled" / name))
    if (packaged / "model.json").is_file():
        return packaged
    known = bundled_names()
    import difflib

    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownNameError(
        f"unknown model {name!r}{hint} (bundled: {', '.join(known) or 'none'}; or give a model folder path)"
    )


def load_bundle(name_or_path: str | Path, *, models_dir: Path | None = None) -> Bundle:
    """A model's description, by name or folder path.

    A model found by name keeps that name, even where its ``model.json`` says another (a
    copied or renamed folder): the name a user asks for is the name results are stored under.
    """
    path = resolve_bundle(name_or_path, models_dir=models_dir)
    by_name = path.name == str(name_or_path) and not (Path(name_or_path).expanduser() / "model.json").is_file()
    try:
        data = json.loads((path / "model.json").read_text())
        bundle = Bundle(
            path=path,
            name=path.name if by_name else data["name"],
            version=str(data.get("version", "0")),
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
