"""The ``astroclassify`` command run inside the test process: the same ``main`` a user's shell runs,
without a new interpreter each time.

Starting Python and importing ONNX Runtime costs about a second and a half per command;
97 commands made that a third of the suite. Tests that are about the process itself (the
console script, signals, what happens at interpreter exit) still start one.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def _environment(env: dict[str, str] | None) -> Iterator[None]:
    if not env:
        yield
        return
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _Text(io.StringIO):
    """A captured stream that says it is not a terminal, as a pipe does."""

    def isatty(self) -> bool:
        return False


def run_in_process(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``astroclassify ARGS`` through ``astroclassify.cli.main``; stdout, stderr and the exit code as a subprocess gives them."""
    import logging

    from astroclassify.cli import main

    out, err = _Text(), _Text()
    argv, root_handlers = sys.argv, logging.getLogger().handlers[:]
    code: int | str | None = 0
    try:
        with _environment(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            sys.argv = ["astroclassify", *args]
            try:
                main()
            except SystemExit as exc:
                code = exc.code
    finally:
        sys.argv = argv
        logging.getLogger().handlers[:] = root_handlers  # `--verbose` commands set up their own
    if code is None:
        code = 0
    elif not isinstance(code, int):
        err.write(f"{code}\n")
        code = 1
    return subprocess.CompletedProcess(["astroclassify", *args], code, out.getvalue(), err.getvalue())
