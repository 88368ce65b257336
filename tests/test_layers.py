"""The import direction that docs/architecture.md promises, checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

import astroclassify

ROOT = Path(astroclassify.__file__).parent

# Lower rank = lower layer. A unit is a top-level module or package, or one of the modules
# listed with its package (a stage whose low parts serve the layers below it). A unit may
# import its own layer's peers only where listed.
RANK = {
    "errors": 0, "config": 0, "_version": 0, "sizes": 0, "urls": 0, "registry": 0, "credits": 0, "zipdir": 0, "extras": 0,
    "store": 1, "models": 1, "imaging": 1, "preparation": 1, "modelfolder": 1,
    "discovery": 1, "discovery.detectors": 1, "discovery.ranking": 1, "discovery.similarity": 1, "discovery.layout": 1,
    "inference": 2, "ingestion": 2,
    "evaluation": 3, "modelfolder.card": 3, "discovery.fitting": 3, "discovery.evaluation": 3,
    "modelfolder.finish": 3.5,
    "training": 4,
    "ingestion.run": 4, "ingestion.watch": 4, "discovery.collection": 4, "batching": 4,
    "learning": 4.5, "sharing": 3,
    "classifier": 5, "datasets": 5, "__init__": 5, "installation": 5.5,
    "cli": 6, "web": 6, "console_script": 6,
}  # fmt: skip
SAME_LAYER = {
    ("preparation", "imaging"),
    ("modelfolder", "imaging"),  # a model's temperature per TTA mode: the TTA type and its one rule
    ("modelfolder.card", "evaluation"),  # intervals as the reports write them
    ("discovery.fitting", "modelfolder.card"),  # a model's own detector goes on its card
    ("discovery.evaluation", "discovery.fitting"),
    ("discovery.fitting", "evaluation"),
    ("ingestion.watch", "ingestion.run"),
    ("config", "errors"),
    ("registry", "errors"),
    ("zipdir", "errors"),
    ("extras", "errors"),
    ("__init__", "classifier"),
    ("cli", "web"),  # `serve` starts the app
    ("console_script", "cli"),
}


def unit(dotted: str) -> str:
    """``astroclassify.discovery.fitting`` -> ``discovery.fitting``; ``astroclassify.store.db`` -> ``store``."""
    parts = dotted.split(".")[1:]
    two = ".".join(parts[:2])
    return two if two in RANK else parts[0]


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {unit(n) for n in names if n.startswith("astroclassify.")}
    return found


def test_every_unit_is_ranked() -> None:
    units = {unit("astroclassify." + ".".join(p.relative_to(ROOT).with_suffix("").parts)) for p in ROOT.rglob("*.py")}
    assert units - set(RANK) == set()


def test_imports_go_one_way() -> None:
    wrong = []
    for path in ROOT.rglob("*.py"):
        layer = unit("astroclassify." + ".".join(path.relative_to(ROOT).with_suffix("").parts))
        for target in imports(path) - {layer}:
            up = RANK[target] > RANK[layer]
            sideways = RANK[target] == RANK[layer] and (layer, target) not in SAME_LAYER
            if layer.split(".")[0] == target.split(".")[0] and not up:
                sideways = False  # a stage's own low parts
            if up or sideways or (layer == "store" and target != "errors"):
                wrong.append(f"{path.relative_to(ROOT)} imports astroclassify.{target}")
    assert wrong == []


def test_store_and_inference_need_no_torch() -> None:
    for package in ("store", "inference", "ingestion", "imaging", "modelfolder"):
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
