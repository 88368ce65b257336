"""The ``astroclassify`` command's root: the Typer app, ``--version`` and ``main``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from astroclassify.cli.console import error, installation
from astroclassify.errors import AstroClassifyError

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Classify astronomical images.")


def _print_version(value: bool) -> None:
    if value:
        from astroclassify._version import __version__

        print(f"astroclassify {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Classify astronomical images."""


def main() -> None:
    """Entry point: Typer handles usage errors (its own message, exit 2); ours print one line.

    Typer runs in standalone mode, so usage errors never reach this function: they are
    handled by whichever click Typer uses (releases from 0.22 on vendor it as
    ``typer._click``, so catching ``click.ClickException`` here would miss them).
    """
    try:
        app(prog_name="astroclassify")
    except AstroClassifyError as exc:
        error(str(exc).replace("\n", " "))
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except ImportError as exc:  # a command whose optional part is not installed
        from astroclassify.errors import missing_extra

        missing = missing_extra(exc)
        if missing is None or _debug():
            raise
        error(str(missing))
        sys.exit(2)
    except Exception as exc:  # a bug: one line for users, the traceback on request
        if _debug():
            raise
        from astroclassify.store.full import FULL_MESSAGE, is_storage_full

        if is_storage_full(exc):  # the database noticed first: the operator's problem, not a bug
            error(FULL_MESSAGE)
            sys.exit(2)
        error(
            f"internal error: {type(exc).__name__}: {exc} (set ASTROCLASSIFY_DEBUG=1 for the traceback and please report it)"
        )
        sys.exit(3)


def _debug() -> bool:

    try:
        return installation().settings.debug
    except AstroClassifyError:
        return False
