"""The package version, in one place (pyproject.toml reads it; ``--version`` and the User-Agent print it)."""

__version__ = "0.1.0"
