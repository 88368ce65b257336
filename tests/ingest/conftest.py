from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest

from tests.ingest.archive_site import ArchiveSite

ESA_GALAXIES = ["heic2401a", "potw2402a", "heic2403a", "potw2404a", "heic2405a"]
ESA_NEBULAE = ["heic2411a", "potw2412a"]


@pytest.fixture
def site(shared_data):
    s = ArchiveSite(shared_data / "apod")
    s.add_esa_category("galaxies", ESA_GALAXIES)
    s.add_esa_category("nebulae", ESA_NEBULAE)
    s.url = s.start()
    yield s
    s.stop()


@pytest.fixture
def cli(tmp_path):
    """Run ``astroclassify`` in a subprocess against an isolated home, with fast retries."""
    home = tmp_path / "home"
    env = dict(
        os.environ,
        ASTROCLASSIFY_HOME=str(home),
        ASTROCLASSIFY_INGEST_MIN_INTERVAL="0",
        ASTROCLASSIFY_INGEST_BACKOFF="0.05",
        ASTROCLASSIFY_INGEST_RETRIES="1",
        ASTROCLASSIFY_INGEST_TIMEOUT="1.5",
    )

    def run(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "astroclassify.cli", *args],
            env={**run.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    run.home = home
    run.env = env
    return run


def day(n: int) -> dt.date:
    return dt.date(2023, 3, 1) + dt.timedelta(days=n)
