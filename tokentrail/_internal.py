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

from .errors import BudgetExceeded

logger = logging.getLogger("tokentrail")

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
