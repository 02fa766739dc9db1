"""tokentrail's version: written here only (pyproject.toml reads it)."""

VERSION = "0.1.0"
