"""The model card: MODEL_CARD.md, rendered from a model folder's own ``model.json``, ``cv.json`` and detector.

Only ``modelfolder`` writes it (``finish`` and ``refresh_model_card``), so every version's
card describes exactly that version's files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from astroclassify.errors import ModelError
from astroclassify.evaluation.metrics import with_interval
from astroclassify.files.sizes import format_bytes
from astroclassify.modelfolder.folder import Bundle

if TYPE_CHECKING:
    from jinja2 import Environment

__all__ = ["DEFAULT_LIMITS", "render_model_card", "write_model_card"]


def _fmt(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _class_f1(m: dict, label: str) -> str:
    """F1 of one class with its interval, or a dash where the class is absent from the scored images."""
    c = m["per_class"][label]
    return with_interval(c["f1"], c.get("f1_ci")) if c["support"] else "–"


DEFAULT_LIMITS = [
    "Scores hold for images like the training data (sources above); other instruments, bands or "
    "processing (FITS, single band) look different.",
    "Labels come from archive categories or volunteer votes and carry errors.",
]


def render_model_card(bundle: Bundle) -> str:
    """The text of MODEL_CARD.md, from ``templates/model_card.md.j2`` and the bundle's metadata.

    A field the template needs and ``model.json`` lacks is a ``ModelError`` naming it (a
    half-written model.json), never a template error escaping as an internal error.
    """
    from jinja2 import Environment, PackageLoader, TemplateError

    env = Environment(
        loader=PackageLoader("astroclassify.evaluation", "templates"),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # Markdown, not HTML
    )
    env.filters["interval"] = with_interval
    try:
        return _render(env, bundle)
    except TemplateError as exc:
        raise ModelError(f"{bundle.path}: the model card cannot be written: model.json lacks a field ({exc})") from None


def _render(env: Environment, bundle: Bundle) -> str:
    meta = bundle.meta
    test = meta.get("metrics", {}).get("test", {})
    cv_file = bundle.path / "cv.json"
    detector_file = bundle.path / "detector" / "detector.json"
    return env.get_template("model_card.md.j2").render(
        detector=json.loads(detector_file.read_text()) if detector_file.is_file() else None,
        b=bundle,
        meta=meta,
        tr=meta.get("training", {}),
        data=meta.get("data", {}),
        test=test,
        method=next((m["ci"]["method"] for m in test.values() if m.get("ci")), None),
        cv=json.loads(cv_file.read_text()) if cv_file.is_file() else None,
        limits=meta.get("limits") or DEFAULT_LIMITS,
        onnx_size=format_bytes(bundle.onnx_path.stat().st_size),
        fmt=_fmt,
        class_f1=_class_f1,
        nan=float("nan"),
    )


def write_model_card(bundle: Bundle) -> Path:
    """MODEL_CARD.md: what the model is, what data it saw, how it was split, how it scores."""
    path = bundle.path / "MODEL_CARD.md"
    path.write_text(render_model_card(bundle))
    return path
