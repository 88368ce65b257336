"""Archives by name: the sources ``ingest`` and ``watch`` can be given as a word.

The built-in archives are listed here rather than registering themselves on import, so
building a source by name needs no import done for its side effect; another archive joins
with ``register_source``.
"""

from __future__ import annotations

from collections.abc import Callable

from astroclassify.ingestion.apod import make_apod
from astroclassify.ingestion.esahubble import make_esahubble
from astroclassify.ingestion.sources import Source, SourceFactory, SourceOptions
from astroclassify.net.http import PoliteClient
from astroclassify.registry import Registry

__all__ = ["SOURCES", "make_source", "register_source"]

SOURCES: Registry[SourceFactory] = Registry("source")
SOURCES.register("apod")(make_apod)
SOURCES.register("esahubble")(make_esahubble)


def register_source(name: str) -> Callable[[SourceFactory], SourceFactory]:
    """Register a factory ``(client, options) -> Source`` under ``name``."""
    return SOURCES.register(name)


def make_source(name: str, client: PoliteClient, options: SourceOptions | None = None) -> Source:
    """The source ``name``; an unknown name fails with the close matches."""
    return SOURCES.get(name)(client, options or SourceOptions())
