"""The import direction that docs/architecture.md promises, checked on the source, folder by folder."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import astroclassify

ROOT = Path(astroclassify.__file__).parent

# Lower rank = lower layer. A unit is a top-level module or a folder (a stage): a unit imports
# only units of a lower rank, never one of its own rank, and there are no exceptions by module.
RANK = {
    "errors": 0, "_version": 0,
    "config": 1, "files": 1, "registry": 1, "progress": 1,
    "store": 2, "models": 2, "imaging": 2,
    "net": 3,
    "preparation": 3, "modelfolder": 3,
    "inference": 4,
    "evaluation": 5, "ingestion": 5,
    "discovery": 6, "sharing": 6,
    "training": 7, "batching": 7,
    "learning": 8,
    "classifier": 9, "datasets": 9, "__init__": 9,
    "installation": 10,
    "web": 11,
    "cli": 12,
    "console_script": 13,
}  # fmt: skip


def unit(dotted: str) -> str:
    """``astroclassify.discovery.fitting`` -> ``discovery``; ``astroclassify.config`` -> ``config``."""
    return dotted.split(".")[1]


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {unit(n) for n in names if n.startswith("astroclassify.")}
    return found


def _units() -> dict[Path, str]:
    return {p: unit("astroclassify." + ".".join(p.relative_to(ROOT).with_suffix("").parts)) for p in ROOT.rglob("*.py")}


def test_every_unit_is_ranked() -> None:
    assert set(_units().values()) - set(RANK) == set()


def test_imports_go_down_folder_by_folder() -> None:
    wrong = []
    for path, layer in _units().items():
        for target in imports(path) - {layer}:
            if RANK[target] >= RANK[layer] or (layer == "store" and target != "errors"):
                wrong.append(f"{path.relative_to(ROOT)} ({layer}, {RANK[layer]}) imports {target} ({RANK[target]})")
    assert wrong == []


def test_no_cycle_between_folders() -> None:
    """Ranks forbid cycles; this says so directly, so a re-ranking cannot hide one."""
    edges: dict[str, set[str]] = defaultdict(set)
    for path, layer in _units().items():
        edges[layer] |= imports(path) - {layer}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(t == goal or (t not in seen and reaches(t, goal, seen | {t})) for t in edges[start])

    assert sorted(u for u in edges if reaches(u, u, {u})) == []


def test_sqlalchemy_is_imported_only_by_the_store() -> None:
    """Routes and stages get repositories (``store/``), sessions and errors through its aliases."""
    outside = sorted(
        str(path.relative_to(ROOT))
        for path, layer in _units().items()
        if layer != "store" and any(n.split(".")[0] == "sqlalchemy" for n in _all_imports(path))
    )
    assert outside == []


def _all_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def test_routes_read_the_apps_state_only_through_deps() -> None:
    """A route names what it needs (``web/deps.py``); the rules for reading it live there once."""
    readers = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "web" / "routers").glob("*.py")
        if ".state." in path.read_text() or "state," in path.read_text()
    )
    assert readers == []
