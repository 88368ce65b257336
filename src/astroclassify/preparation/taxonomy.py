"""Taxonomies: YAML files that turn a dataset's labels into the classes a model learns.

One dataset serves several questions: Galaxy Zoo's six labels, a coarse
elliptical / spiral / edge-on / merger split, or the seed tools' four Hubble types. A
taxonomy lists, for each model class, the dataset labels it takes in; labels it does not
list are left out of training and counted, never silently relabelled. An entry may also
test a manifest column instead of the label: ``fine_type=spiral_galaxy`` (equal), or
``featured_or_disk_fraction>=0.6&no_spiral_arms_fraction>=0.7`` (vote fractions deciding, all
conditions joined by ``&``); a sample whose columns match such an entry takes that class
before its label is looked at. ``mirror`` says
which class a mirror image belongs to (a clockwise spiral becomes anticlockwise), so
training can flip images and swap their labels, and test-time flips can swap logits.
The taxonomy is stored in the model's ``model.json``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, partial
from importlib import resources
from pathlib import Path

from astroclassify.errors import ConfigError, UnknownNameError
from astroclassify.preparation.dataset import Sample

__all__ = ["Taxonomy", "builtin_taxonomies", "load_taxonomy"]


@dataclass(frozen=True)
class Taxonomy:
    name: str
    classes: dict[str, tuple[str, ...]]  # model class -> dataset labels
    mirror: dict[str, str] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for target, sources in self.classes.items():
            for source in sources:
                if _is_condition(source):
                    _conditions(source, self.name)  # fails at load, not mid-training
                    continue
                if source in seen and seen[source] != target:
                    raise ConfigError(
                        f"taxonomy {self.name}: label {source!r} maps to both {seen[source]!r} and {target!r}"
                    )
                seen[source] = target
        for a, b in self.mirror.items():
            if a not in self.classes or b not in self.classes:
                raise ConfigError(f"taxonomy {self.name}: mirror {a!r} -> {b!r} names a class it does not define")
            if self.mirror.get(b, b) != a:
                raise ConfigError(
                    f"taxonomy {self.name}: mirror must be symmetric ({a} -> {b} but {b} -> {self.mirror.get(b, b)})"
                )

    @property
    def labels(self) -> list[str]:
        return sorted(self.classes)

    def map_label(self, label: str) -> str | None:
        """The class of a dataset label; a label that already names a class is that class (labels a model
        gave back, such as a corrected ``spiral`` for gz1-coarse, need no mapping)."""
        for target, sources in self.classes.items():
            if label in sources:
                return target
        return label if label in self.classes else None

    def map_sample(self, label: str, meta: dict[str, str]) -> str | None:
        """The class of a sample: the first entry whose column conditions its manifest row meets, else its label's."""
        for target, sources in self.classes.items():
            for source in sources:
                if _is_condition(source) and all(test(meta) for test in _conditions(source, self.name)):
                    return target
        return self.map_label(label)

    def apply(self, samples: list[Sample]) -> tuple[list[Sample], Counter]:
        """Samples relabelled into this taxonomy, and a count of the labels left out."""
        kept: list[Sample] = []
        dropped: Counter[str] = Counter()
        for s in samples:
            target = self.map_sample(s.label, s.meta)
            if target is None:
                dropped[s.label] += 1
            else:
                kept.append(Sample(s.path, target, s.dataset, {**s.meta, "source_label": s.label}))
        return kept, dropped

    def mirror_index(self, labels: list[str]) -> list[int]:
        """For each class index, the index of the class its mirror image has."""
        return [
            labels.index(m) if (m := self.mirror.get(label, label)) in labels else i for i, label in enumerate(labels)
        ]

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "classes": {k: list(v) for k, v in self.classes.items()},
            "mirror": dict(self.mirror),
        }

    @classmethod
    def from_dict(cls, raw: object, origin: str) -> Taxonomy:
        if not isinstance(raw, dict) or not isinstance(raw.get("classes"), dict) or not raw["classes"]:
            raise ConfigError(f"{origin}: a taxonomy needs a 'classes' mapping of class -> [dataset labels]")
        classes = {}
        for target, sources in raw["classes"].items():
            if isinstance(sources, str):
                sources = [sources]
            if not isinstance(sources, list) or not all(isinstance(x, str | int) for x in sources):
                raise ConfigError(f"{origin}: class {target!r} must list dataset labels")
            classes[str(target)] = tuple(str(x) for x in sources)
        mirror = raw.get("mirror") or {}
        if not isinstance(mirror, dict):
            raise ConfigError(f"{origin}: 'mirror' must map class -> class")
        return cls(
            name=str(raw.get("name") or Path(origin).stem),
            classes=classes,
            mirror={str(k): str(v) for k, v in mirror.items()},
            description=str(raw.get("description", "")),
        )


_OPERATORS = (">=", "<=", "=")


def _is_condition(entry: str) -> bool:
    return any(op in entry for op in _OPERATORS)


@cache  # parsed once per entry, not once per sample
def _conditions(entry: str, name: str) -> tuple[Callable[[dict[str, str]], bool], ...]:
    """``column=value`` / ``column>=x`` / ``column<=x`` tests, joined by ``&``, as functions of a manifest row."""
    tests: list[Callable[[dict[str, str]], bool]] = []
    for part in entry.split("&"):
        op = next((o for o in _OPERATORS if o in part), "")
        column, _, value = part.partition(op) if op else ("", "", "")
        column, value = column.strip(), value.strip()
        if not column or not value:
            raise ConfigError(f"taxonomy {name}: cannot read condition {part!r} (column=value, column>=x, column<=x)")
        if op == "=":
            tests.append(partial(_equals, column=column, value=value))
            continue
        try:
            bound = float(value)
        except ValueError:
            raise ConfigError(f"taxonomy {name}: {part!r} compares with {value!r}, not a number") from None
        tests.append(partial(_compare, column=column, op=op, bound=bound))
    return tuple(tests)


def _equals(row: dict[str, str], *, column: str, value: str) -> bool:
    return row.get(column) == value


def _compare(row: dict[str, str], *, column: str, op: str, bound: float) -> bool:
    cell = row.get(column)
    try:
        x = float(cell) if cell not in (None, "") else float("nan")
    except ValueError:
        return False
    return x >= bound if op == ">=" else x <= bound  # NaN (no answer) meets neither


def _builtin_root():
    return resources.files("astroclassify") / "taxonomies"


def builtin_taxonomies() -> list[str]:
    return sorted(p.name.removesuffix(".yaml") for p in _builtin_root().iterdir() if p.name.endswith(".yaml"))


def load_taxonomy(name_or_path: str | Path) -> Taxonomy:
    """A built-in taxonomy by name (``gz1-coarse``) or a YAML file."""
    from astroclassify.files.yamltext import parse_yaml, read_yaml

    path = Path(name_or_path).expanduser()
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"{path}: taxonomy file not found")
        return Taxonomy.from_dict(read_yaml(path), str(path))
    names = builtin_taxonomies()
    if str(name_or_path) not in names:
        raise UnknownNameError(f"unknown taxonomy {str(name_or_path)!r}; built-in: {', '.join(names)}")
    text = (_builtin_root() / f"{name_or_path}.yaml").read_text()
    return Taxonomy.from_dict(parse_yaml(text, str(name_or_path)), str(name_or_path))
