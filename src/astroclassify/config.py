"""Settings: the only reader of ``os.environ`` (``installation.Installation`` turns them into objects).

One variable, ``ASTROCLASSIFY_HOME``, moves a whole installation (database, uploads,
cache, user models), so tests and users can isolate one with a single export.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_FILE_BYTES",
    "DEFAULT_MAX_IMAGE_PIXELS",
    "DecodeLimits",
    "Settings",
    "get_settings",
]

# Decoding limits, in one place: larger images are refused before their pixels are decoded.
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class DecodeLimits:
    """What decoding one image from outside may cost, checked before its pixels are decoded.

    ``max_bytes`` bounds the file read, ``max_pixels`` the pixels it may decode to (every
    FITS axis counts): the pair every path that decodes travels with, as one value.
    """

    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_bytes: int = DEFAULT_MAX_FILE_BYTES

    def within(self, other: DecodeLimits | None) -> DecodeLimits:
        """These limits, lowered (never raised) to ``other``'s: a web upload's under the server's."""
        if other is None:
            return self
        return DecodeLimits(min(self.max_pixels, other.max_pixels), min(self.max_bytes, other.max_bytes))


DEFAULT_LIMITS = DecodeLimits()


@dataclass(frozen=True)
class Folders:
    """Where names are looked up: user models (``models_dir``) and named collections (``data_dir``).

    One value rather than two loose parameters on every function that resolves a name; an
    ``Installation`` hands out its own (``Installation.folders()``).
    """

    models_dir: Path | None = None
    data_dir: Path | None = None


BUNDLED_ONLY = Folders()  # no models folder, no data folder: bundled models and explicit paths only


class Settings(BaseSettings):
    """Runtime settings, read from ``ASTROCLASSIFY_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="ASTROCLASSIFY_", extra="ignore")

    home: Path = Field(default_factory=lambda: Path.home() / ".astroclassify")
    # Where named collections (hubble-dso, ...) are found; see preparation/collections.py.
    data_dir: Path | None = None
    default_model: str = "dso"
    # An anomaly detector folder for the default model, instead of its own (serve --detector).
    default_detector: Path | None = None
    database_url: str | None = None
    # Decoding limits: larger images are refused before their pixels are decoded.
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    # API keys: None = decided per request: required for every client not on this machine
    # (judged by its address; see trusted_proxies). True/False: always/never.
    require_api_key: bool | None = None
    # Requests per minute per API key (or per client address without one, pages and refused
    # requests included); 0 disables.
    rate_limit_per_minute: int = 600
    # A SQLite file in which several server processes share their buckets (set by
    # `serve --workers N`); None: this process's memory.
    rate_limit_store: Path | None = None
    # Reverse proxies (addresses, comma-separated) whose X-Forwarded-For names the client.
    # Empty: the connecting address is the client, and X-Forwarded-For is ignored.
    trusted_proxies: Annotated[list[str], NoDecode] = []
    # Host names the web app answers to (comma-separated; "*" for any). Empty: this machine's
    # loopback names only, so a page elsewhere cannot reach the server by DNS rebinding.
    allowed_hosts: Annotated[list[str], NoDecode] = []
    # Test-time augmentation for web requests: "model" (the default) uses each model's own
    # mode, as `predict`, `evaluate` and the Python API do, so every way of asking gives the
    # same answer. "none" (one pass) doubles the requests per second of a rot4 model.
    serve_tta: Literal["none", "rot4", "rot4flip", "model"] = "model"
    # Results under this calibrated confidence are flagged as unusual (web page and API).
    low_confidence_threshold: float = Field(default=0.6, ge=0.0, le=1.0)
    # Largest single upload the web API accepts (413 above it), and the most pixels it may
    # decode to (after JPEG draft decoding): lower than the CLI's, because a server decodes
    # for anyone. A 40 Mpx PNG takes about 320 MB while it is decoded.
    max_upload_bytes: int = 20 * 1024 * 1024
    max_upload_pixels: int = 40_000_000
    # Web decodes running at once (0 = one per CPU core): each may hold a full-size image.
    max_concurrent_decodes: int = Field(default=0, ge=0)
    # A connection must deliver a request's headers this many seconds after it opens (or after
    # its next request's first byte); one address may hold this many connections per worker.
    # Slowloris: 1,100 connections that sent nothing held every file descriptor for ever.
    header_timeout_s: float = Field(default=20.0, gt=0.0)
    max_connections_per_address: int = Field(default=64, ge=1)
    # Batch uploads: most files per request, and the most bytes a zip may expand to.
    batch_max_files: int = 100
    batch_max_bytes: int = 256 * 1024 * 1024
    # Ingestion (astroclassify ingest / watch): NASA API key (DEMO_KEY allows 30 requests an
    # hour), seconds between two requests to one host, retries and backoff base, deadline.
    apod_api_key: str = "DEMO_KEY"
    # Where APOD is read. The main site moved to science.nasa.gov/apod in 2026 with another
    # layout; mirrors that keep the classic one (archivepix.html, apYYMMDD.html) are tried in
    # turn when the main site cannot be read. apod.com is the editors' own domain (linked from
    # recent pages); its layout could not be checked from here.
    apod_base_url: str = "https://apod.nasa.gov/apod/"
    apod_mirrors: Annotated[list[str], NoDecode] = ["https://apod.com/apod/"]
    apod_api_url: str = "https://api.nasa.gov/planetary/apod"
    ingest_min_interval: float = Field(default=1.0, ge=0.0)
    ingest_retries: int = Field(default=4, ge=0)
    ingest_backoff: float = Field(default=1.0, ge=0.0)
    ingest_timeout: float = Field(default=60.0, gt=0.0)
    # ONNX Runtime threads; 0 lets ORT choose (all cores).
    inference_threads: int = 0
    # Preload tcmalloc for training (2-4x faster torch on these machines); see tcmalloc_env below.
    tcmalloc: bool = True
    # Show full tracebacks for unexpected errors (otherwise the CLI prints one line).
    debug: bool = False

    @field_validator("trusted_proxies", "allowed_hosts", "apod_mirrors", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @cached_property
    def models_dir(self) -> Path:
        return self.home / "models"

    @cached_property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    def model_or_default(self, model: str | Path | None) -> str | Path:
        """The one rule for a model nobody named: the installation's default (``ASTROCLASSIFY_DEFAULT_MODEL``)."""
        return model or self.default_model

    def serving(self, model: str | Path | None = None, detector: Path | None = None) -> Settings:
        """These settings with another default model (and its detector): how ``serve --model`` reaches every worker."""
        update: dict[str, Any] = {}
        if model:
            update["default_model"] = str(model)
        if detector is not None:
            update["default_detector"] = Path(detector)
        return self.model_copy(update=update) if update else self

    @property
    def tta_override(self) -> str | None:
        """The TTA mode web requests use; None means the model's own ("model")."""
        return None if self.serve_tta == "model" else self.serve_tta

    def serving_tta(self, model_tta: str) -> str:
        """The one rule for the views a web request gets: the server's choice, else the model's own."""
        return self.tta_override or model_tta

    @property
    def decode_limits(self) -> DecodeLimits:
        """What one image may cost to decode: the CLI's and the library's limit."""
        return DecodeLimits(self.max_image_pixels, self.max_file_bytes)

    @property
    def upload_limits(self) -> DecodeLimits:
        """What one web upload may cost to decode: lower, because a server decodes for anyone."""
        return DecodeLimits(self.max_upload_pixels, self.max_upload_bytes).within(self.decode_limits)

    def predictor_options(self) -> dict[str, Any]:
        """``OnnxPredictor``/``PredictorPool`` keyword arguments: these settings' limits, threads and models."""
        return {"threads": self.inference_threads, "limits": self.decode_limits, "models_dir": self.models_dir}

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.home / 'astroclassify.db'}"


def get_settings() -> Settings:
    """Read settings now (not cached: tests and the CLI change the environment)."""
    from pydantic import ValidationError

    from astroclassify.errors import ConfigError

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"ASTROCLASSIFY_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"bad setting: {problems}") from None


TCMALLOC_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
)


def tcmalloc_env() -> dict[str, str] | None:
    """Environment for re-running this process with tcmalloc preloaded, or None.

    torch's CPU training allocates and frees many large tensors; glibc malloc returns them
    to the OS and page-faults them back each step. tcmalloc keeps them, measured here at
    +20% images/s for EfficientNet-Lite0 training. None when disabled, already loaded or
    not installed (Debian: ``apt-get install libtcmalloc-minimal4``).
    """
    import os

    if not get_settings().tcmalloc or "tcmalloc" in os.environ.get("LD_PRELOAD", ""):
        return None
    lib = next((p for p in TCMALLOC_CANDIDATES if Path(p).is_file()), None)
    if lib is None:
        return None
    env = dict(os.environ)
    env["LD_PRELOAD"] = f"{lib} {env.get('LD_PRELOAD', '')}".strip()
    return env
