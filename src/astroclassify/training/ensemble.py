"""``build_ensemble``: merge models into one, calibrate it on validation, score it on test, write its card."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from astroclassify.config import BUNDLED_ONLY, Folders
from astroclassify.evaluation.calibration import fit_temperature
from astroclassify.evaluation.evaluate import Evaluation, evaluate
from astroclassify.evaluation.finish import Scored, finish
from astroclassify.evaluation.metrics import with_interval
from astroclassify.inference.ensemble import merge_models
from astroclassify.modelfolder.folder import Bundle, load_bundle
from astroclassify.modelfolder.versions import draft
from astroclassify.progress import Progress

__all__ = ["EnsembleResult", "build_ensemble"]


@dataclass
class EnsembleResult:
    """The ensemble's model folder and the test scores of its members and of itself."""

    bundle: Bundle
    scores: dict[str, Evaluation]  # name -> evaluation on the shared test split; the ensemble's last

    @property
    def path(self) -> Path:
        return self.bundle.path

    def __repr__(self) -> str:
        rows = ", ".join(
            f"{name} {with_interval(e.metrics['macro_f1'], e.metrics.get('ci', {}).get('macro_f1'))}"
            for name, e in self.scores.items()
        )
        return f"EnsembleResult({self.bundle.name} at {self.path}; test macro-F1: {rows})"


def build_ensemble(
    members: Sequence[str | Path],
    out: str | Path,
    *,
    name: str | None = None,
    tta: str | None = None,
    calibrate: bool = True,
    command: str = "",
    folders: Folders = BUNDLED_ONLY,
    progress: Progress | None = None,
) -> EnsembleResult:
    """One ONNX model averaging its members' calibrated probabilities; it loads like any model.

    Parameters
    ----------
    members : list of str or Path
        Two or more model folders or names with the same classes, preprocessing and ``splits.csv``.
    out : str or Path
        The ensemble's model folder.
    calibrate : bool, default=True
        Averaged calibrated probabilities are usually under-confident: fit one more temperature
        on the members' shared validation split (never on test).
    command : str
        How it was made, for the model card (the CLI passes its own command line).

    Returns
    -------
    EnsembleResult
        Each member's and the ensemble's scores on the shared test split, which no member trained on.
    """
    out = Path(out)
    with draft(out, made_by="ensemble", info={"members": [str(m) for m in members]}) as d:
        bundle = merge_models(list(members), d.path, name=name or out.name, tta=tta, models_dir=folders.models_dir)
        sources = bundle.meta["training"]["config"]["data"]
        if calibrate:
            val = evaluate(bundle, sources, split="val", folders=folders, progress=progress)
            if val.metrics["n"]:
                y_val = np.array([bundle.labels.index(t) for t in val.y_true])
                temperature = fit_temperature(np.log(np.maximum(val.probs, 1e-12)), y_val)
                bundle = dataclasses.replace(bundle, temperature=temperature)
                bundle.meta["temperature_fitted_on"] = "val"
                bundle.save()
        scores = {
            m["name"]: evaluate(m["path"], sources, split="auto", folders=folders, progress=progress)
            for m in bundle.meta["ensemble"]["members"]
        }
        scores[bundle.name] = result = evaluate(bundle, sources, split="auto", folders=folders, progress=progress)
        bundle.meta["training"]["command"] = command
        # Its "logits" are log mean probabilities: no uncalibrated reliability curve to draw.
        finish(bundle, {"all": dataclasses.replace(Scored.of(result), logits=None)})
        d.info["scores"] = {k: result.metrics[k] for k in ("n", "accuracy", "macro_f1")}
    return EnsembleResult(load_bundle(d.published), scores)
