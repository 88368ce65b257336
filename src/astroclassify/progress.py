"""How long work reports its progress: ``progress(description, total) -> advance(n)``.

The CLI draws Rich bars; library use is silent by default. Every stage takes one, so the type
lives at the bottom of the house, not in a stage.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Progress", "silent"]

Progress = Callable[[str, int], Callable[[int], None]]


def silent(description: str, total: int) -> Callable[[int], None]:
    """A progress that reports nothing (the library's default)."""

    def advance(n: int = 1) -> None:
        pass

    return advance
