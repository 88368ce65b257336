"""The ``astroclassify`` console script: the CLI, or one line naming the extra it needs."""

from __future__ import annotations

import sys

from astroclassify.errors import missing_extra

__all__ = ["main"]


def main() -> None:
    """Run the CLI; where its libraries are not installed (a core-only install), say which extra brings them."""
    try:
        from astroclassify.cli import main as cli
    except ImportError as exc:
        error = missing_extra(exc)
        if error is None:
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    cli()
