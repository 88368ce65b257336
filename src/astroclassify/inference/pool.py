"""Several models served from one process: each loaded on first use, then kept for the next request."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from astroclassify.errors import ModelError, UnknownNameError
from astroclassify.inference.predictor import OnnxPredictor
from astroclassify.modelfolder.folder import (
    Bundle,
    ModelEntry,
    available_models,
    broken_models,
    load_bundle,
    resolve_bundle,
)

__all__ = ["PredictorPool"]

log = logging.getLogger(__name__)


class PredictorPool:
    """Named ``OnnxPredictor``s: the bundled models and the user's, by name.

    Parameters
    ----------
    default : str
        The model used when a request names none (a name or a model folder path).
    models_dir : Path, optional
        Folder of user models; default: ``$ASTROCLASSIFY_HOME/models``.
    detector : Path, optional
        An anomaly detector folder for the default model (instead of its own).
    **predictor_options
        Passed to every ``OnnxPredictor`` (``threads``, ``limits``).
    """

    def __init__(
        self, default: str, *, models_dir: Path | None = None, detector: Path | None = None, **predictor_options: Any
    ) -> None:
        self.models_dir = models_dir
        self.options = predictor_options
        self._loaded: dict[str, OnnxPredictor] = {}
        self._lock = threading.Lock()
        # ``detector`` replaces the default model's own; the others keep theirs.
        try:
            first = OnnxPredictor(default, models_dir=models_dir, detector=detector, **predictor_options)
        except ModelError:
            # A damaged home (its pointer edited by hand, say) must not take the other models down
            # with it: the default answers with its error until it is mended, /health names it.
            if str(default) not in broken_models(models_dir):
                raise
            log.warning("the default model %s cannot serve: %s", default, broken_models(models_dir)[str(default)])
            self.default = str(default)
        else:
            self.default = first.bundle.name
            self._loaded[self.default] = first
        self._refs: dict[str, tuple[str | Path, Path | None]] = {self.default: (default, detector)}

    def entries(self) -> list[ModelEntry]:
        """Every model a request may name (read again each time: new user models appear without a restart)."""
        entries = available_models(self.models_dir)
        default = self._loaded.get(self.default)
        if default is not None and all(e.name != self.default for e in entries):  # served from a folder path
            entries.insert(0, ModelEntry(self.default, default.bundle.path, "folder"))
        return entries

    def broken(self) -> dict[str, str]:
        """User models that cannot be served now, with why (``/health`` reports them)."""
        return broken_models(self.models_dir)

    def bundles(self) -> list[Bundle]:
        return [
            self._loaded[e.name].bundle
            if e.name in self._loaded
            else load_bundle(self._ref(e), models_dir=self.models_dir)
            for e in self.entries()
        ]

    def _ref(self, entry: ModelEntry) -> str | Path:
        """How to load an entry so that its bundle carries the entry's name (see ``load_bundle``)."""
        return entry.path if entry.where == "folder" else entry.name

    def get(self, name: str | None = None) -> OnnxPredictor:
        """The predictor for ``name`` (default: the pool's default model), at the version its home serves now.

        A version promoted or rolled back (``models use``, ``models rollback``) is loaded on the
        next request that names the model; requests already running finish on the old one.
        """
        name = name or self.default
        predictor = self._loaded.get(name)
        if predictor is not None and self._served(name) == predictor.bundle.path:
            return predictor
        if name not in self._refs:
            entry = next((e for e in self.entries() if e.name == name), None)
            if entry is None:
                names = ", ".join(e.name for e in self.entries())
                raise UnknownNameError(f"unknown model {name!r}; this server has: {names}")
            self._refs[name] = (self._ref(entry), None)
        with self._lock:  # two first requests for one model load it once
            ref, detector = self._refs[name]
            current = self._loaded.get(name)
            if current is None or self._served(name) != current.bundle.path:
                self._loaded[name] = OnnxPredictor(ref, models_dir=self.models_dir, detector=detector, **self.options)
            return self._loaded[name]

    def _served(self, name: str) -> Path:
        ref, _ = self._refs[name]
        return resolve_bundle(ref, models_dir=self.models_dir)
