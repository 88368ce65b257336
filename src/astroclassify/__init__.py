"""astroclassify: classify astronomical images, from data to calibrated ONNX predictions.

Every capability is one function or class here; ``__init__.pyi`` lists them, grouped by task,
and docs/api.md has runnable examples. Names are loaded on first use, so ``import
astroclassify`` stays light (no torch, no SQLAlchemy) until a training or archive function is
used.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
from pathlib import Path
from typing import Any

from astroclassify._version import __version__ as __version__


def _exports() -> dict[str, tuple[str, str | None]]:
    """Name -> (module, attribute) from ``__init__.pyi``, where each export is listed once.

    The stub serves type checkers and editors as it is; reading it here keeps one list
    rather than three (imports for type checkers, a lazy table, ``__all__``). A stub exports
    ``from m import x as x`` and ``name = x``; a plain ``from m import x`` only names a source.
    """
    tree = ast.parse((Path(__file__).parent / "__init__.pyi").read_text())
    sources: dict[str, tuple[str, str | None]] = {}
    table: dict[str, tuple[str, str | None]] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                whole = node.module == "astroclassify"  # a submodule: ``from astroclassify import datasets``
                target = (f"astroclassify.{alias.name}", None) if whole else (node.module, alias.name)
                sources[alias.asname or alias.name] = target
                if alias.asname == alias.name:
                    table[alias.name] = target
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Name):
            for name in node.targets:
                if isinstance(name, ast.Name):
                    table[name.id] = sources[node.value.id]
    return table


_LAZY = _exports()
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'astroclassify' has no attribute {name!r}") from None
    try:
        value = importlib.import_module(module)
    except ImportError as exc:
        from astroclassify.errors import missing_extra

        raise (missing_extra(exc) or exc) from None
    value = value if attr is None else getattr(value, attr)
    if inspect.isfunction(value):
        value = _naming_extras(value)
    globals()[name] = value  # looked up once
    return value


def _naming_extras(function: Any) -> Any:
    """``function``, with an optional library it imports when called, if missing, named by its extra."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except ImportError as exc:
            from astroclassify.errors import missing_extra

            missing = missing_extra(exc)
            if missing is None:
                raise
            raise missing from None

    return call


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
