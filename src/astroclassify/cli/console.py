"""What every command shares: the consoles, one-line errors, logging, progress bars and the installation."""

from __future__ import annotations

import logging
import sys

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from astroclassify.installation import Installation

__all__ = ["Bars", "err", "error", "installation", "out", "setup_logging"]

out = Console()
err = Console(stderr=True)
log = logging.getLogger("astroclassify")


def installation() -> Installation:
    """The installation this command runs in, read from the environment now (tests change it between commands)."""
    return Installation.current()


def error(message: str) -> None:
    """One line on stderr, never wrapped (scripts grep these)."""
    print(f"error: {message}", file=sys.stderr, flush=True)


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False, show_time=False)],
        force=True,
    )


class Bars:
    """Rich progress bars behind the library's ``progress(description, total)`` hook."""

    def __init__(self, enabled: bool = True) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<18}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=not enabled,
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.progress.live.is_started:
            self.progress.__exit__(*exc)

    def __call__(self, description: str, total: int):
        """Starts the bars with the first task, so an error before any work prints no blank line."""
        if not self.progress.live.is_started:
            self.progress.__enter__()
        task = self.progress.add_task(description, total=total or None)  # 0: unknown length
        return lambda n=1: self.progress.advance(task, n)
