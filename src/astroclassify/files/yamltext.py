"""YAML that people write (recipes, taxonomies), read within bounds.

PyYAML's ``safe_load`` runs no code but expands aliases on use: a 420-byte "billion laughs"
recipe becomes gigabytes once anything walks it. Nobody writes anchors in a recipe, so they
are refused outright, and a file is never read past ``MAX_YAML_BYTES``.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent

from astroclassify.errors import ConfigError
from astroclassify.files.sizes import format_bytes

__all__ = ["MAX_YAML_BYTES", "parse_yaml", "read_yaml"]

MAX_YAML_BYTES = 1 << 20  # the largest recipe or taxonomy here is 6 KB


class _NoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent, index):
        if self.check_event(AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (*name) are not allowed here", event.start_mark
            )
        return super().compose_node(parent, index)


def parse_yaml(text: str, origin: str) -> Any:
    """The plain values in ``text`` (mappings, lists, strings, numbers), or a ``ConfigError`` naming ``origin``."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"{origin}: {format_bytes(len(text))} of YAML, over the {format_bytes(MAX_YAML_BYTES)} limit")
    loader = _NoAliasLoader(text)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML ({exc})".replace("\n", " ")) from None
    except RecursionError:
        raise ConfigError(f"{origin}: YAML nested too deeply") from None
    finally:
        loader.dispose()


def read_yaml(path: str | PathLike) -> Any:
    """``parse_yaml`` of a file, its size checked before it is read."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise ConfigError(
                f"{path}: {format_bytes(size)}, over the {format_bytes(MAX_YAML_BYTES)} a YAML file may have"
            )
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc})") from None
    return parse_yaml(text, str(path))
