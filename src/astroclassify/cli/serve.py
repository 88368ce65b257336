"""``serve``: the web app and REST API."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from astroclassify.cli.app import app
from astroclassify.cli.console import err, installation, out, setup_logging
from astroclassify.errors import AstroClassifyError


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    model: Annotated[
        str, typer.Option("--model", "-m", help="Default model (bundled name or folder); every model is served.")
    ] = "",
    tta: Annotated[
        str | None,
        typer.Option(
            help="Test-time augmentation: model (each model's own, the default), none (fastest), rot4, rot4flip."
        ),
    ] = None,
    detector: Annotated[
        Path | None, typer.Option(help="Anomaly detector folder for the default model (default: its own).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, max=64, help="Server processes (default: one per core, one ORT thread each).")
    ] = None,
) -> None:
    """Run the web app and REST API (upload page at /, OpenAPI at /docs)."""
    from astroclassify.modelfolder.folder import load_bundle
    from astroclassify.web.guard import LOOPBACK_HOSTS, is_loopback
    from astroclassify.web.server import serve as run_server

    settings = installation().settings.serving(model, detector)
    load_bundle(settings.model_or_default(None))  # fail fast with a one-line error
    if tta is not None:
        if tta not in ("none", "rot4", "rot4flip", "model"):
            raise AstroClassifyError(f"--tta must be none, rot4, rot4flip or model; got {tta!r}")
        settings = settings.model_copy(update={"serve_tta": tta})
    if not settings.allowed_hosts and not is_loopback(host):
        # Answer to the address bound; a wildcard bind cannot know the names clients use.
        wildcard = host in ("0.0.0.0", "::", "")
        settings = settings.model_copy(update={"allowed_hosts": ["*"] if wildcard else [*LOOPBACK_HOSTS, host]})
        if wildcard:
            err.print("warning: answering any Host header; set ASTROCLASSIFY_ALLOWED_HOSTS to this server's names")
    setup_logging(verbose=True)
    auth = {
        True: "API keys required",
        False: "no API key required",
        None: "API keys required for clients on other machines",
    }[settings.require_api_key]
    n = workers or os.cpu_count() or 1
    # Two short lines: one sentence of 100 characters wrapped mid-phrase in an 80-column terminal.
    out.print(f"serving on http://{host}:{port}  (Ctrl-C to stop)", highlight=False)
    out.print(f"{auth}; {n} worker process{'es' if n != 1 else ''}", highlight=False)
    run_server(settings, host=host, port=port, workers=n)
