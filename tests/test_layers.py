"""The import direction that docs/architecture.md promises, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import astroclassify

ROOT = Path(astroclassify.__file__).parent

# Lower rank = lower layer. A package may import its own layer's peers only where listed.
RANK = {
    "errors": 0, "config": 0, "_version": 0, "sizes": 0, "urls": 0, "registry": 0, "credits": 0, "zipdir": 0,
    "store": 1, "models": 1, "imaging": 1, "data": 1, "anomalies": 1,
    "inference": 2, "sources": 2,
    "evaluation": 3, "training": 3,
    "pipeline": 4,
    "classifier": 5, "datasets": 5, "__init__": 5,
    "cli": 6, "cli_ingest": 6, "cli_anomalies": 6, "cli_batch": 6, "web": 6,
}  # fmt: skip
SAME_LAYER = {
    ("data", "imaging"),
    ("training", "evaluation"),
    ("config", "errors"),
    ("registry", "errors"),
    ("zipdir", "errors"),
    ("__init__", "classifier"),
    ("cli", "web"),  # `serve` starts the app
    ("cli_anomalies", "cli"),  # shares the progress bars
    ("cli_batch", "cli"),
}


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {n.split(".")[1] for n in names if n.startswith("astroclassify.")}
    return found


def test_imports_go_one_way() -> None:
    wrong = []
    for path in ROOT.rglob("*.py"):
        layer = path.relative_to(ROOT).parts[0].removesuffix(".py")
        for target in imports(path) - {layer}:
            up = RANK[target] > RANK[layer]
            sideways = RANK[target] == RANK[layer] and (layer, target) not in SAME_LAYER
            if up or sideways or (layer == "store" and target != "errors"):
                wrong.append(f"{path.relative_to(ROOT)} imports astroclassify.{target}")
    assert wrong == []


def test_store_and_inference_need_no_torch() -> None:
    for package in ("store", "inference", "sources", "imaging"):
        for path in (ROOT / package).rglob("*.py"):
            assert "torch" not in {n.split(".")[0] for n in _modules(path)}, path


def _modules(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out
