"""The ``astroclassify`` command: parse, call one library function, print. Errors print one line.

One module per command group; each adds its commands to ``app`` when imported, in the order
``--help`` lists them (the everyday commands first).
"""

from __future__ import annotations

# isort: off
from astroclassify.cli import predict, models, train, serve, feedback, keys, data  # noqa: F401
from astroclassify.cli import ingest, anomalies, batch, export, sharing  # noqa: F401

# isort: on
from astroclassify.cli.app import app, main

__all__ = ["app", "main"]
