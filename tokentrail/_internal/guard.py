"""The one internal-error guard: telemetry must never break the user's program.

As in logfire's `_internal/utils.py`: an internal error is logged once, with where it happened
and what tokentrail was doing, and swallowed, except under pytest (or with
TOKENTRAIL_RAISE_INTERNAL_ERRORS=1), where it is re-raised so tests see it. BudgetExceeded is the
one exception meant for the user and always passes through.

A framework that swallows its handlers' exceptions itself (LlamaIndex) gives the guard an
`ErrorLog`: the error is kept there for its tests to assert on instead of being re-raised.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ..errors import BudgetExceeded

logger = logging.getLogger("tokentrail")

F = TypeVar("F", bound=Callable[..., Any])

KEEP = 50  # errors an ErrorLog keeps, most recent last


def reraise() -> bool:
    """Re-raise internal errors: under pytest, or as TOKENTRAIL_RAISE_INTERNAL_ERRORS says."""
    flag = os.environ.get("TOKENTRAIL_RAISE_INTERNAL_ERRORS")
    if flag is not None:
        return flag.lower() in ("1", "true", "yes")
    return "PYTEST_CURRENT_TEST" in os.environ


class ErrorLog:
    """Internal errors one integration hit: counted, and the first KEEP kept for tests."""

    def __init__(self) -> None:
        self.seen: list[BaseException] = []
        self.count = 0

    def record(self, error: BaseException, where: str) -> None:
        self.count += 1
        if len(self.seen) < KEEP:
            self.seen.append(error)
        log_internal_error(where, error)

    @contextmanager
    def guard(self, where: str) -> Iterator[None]:
        """For cold paths; hot paths inline `except Exception as e: log.record(e, where)`
        (a generator-based context manager costs ~1.5 µs a use)."""
        try:
            yield
        except BudgetExceeded:
            raise
        except Exception as e:
            self.record(e, where)


def log_internal_error(where: str, error: BaseException, **context: Any) -> None:
    """Log one internal error with its context (never raises: a logging handler may be broken)."""
    extra = "".join(f", {k}={v!r}" for k, v in context.items())
    try:
        logger.error("tokentrail internal error in %s%s (your program continues)", where, extra, exc_info=error)
    except Exception:  # a user's broken logging handler: nothing left to tell
        pass


def handle_internal_error(where: str, error: BaseException, **context: Any) -> None:
    """Call inside `except Exception as e:` in telemetry code: re-raises under pytest, else logs."""
    if reraise():
        raise error
    log_internal_error(where, error, **context)


@contextmanager
def internal_errors(where: str, **context: Any) -> Iterator[None]:
    """`with internal_errors("exporter flush"):` — the guard as a block."""
    try:
        yield
    except BudgetExceeded:
        raise
    except Exception as e:
        handle_internal_error(where, e, **context)


def swallow_errors(func: F) -> F:
    """The guard as a decorator, for callback methods: an internal error returns None."""
    where = func.__qualname__

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BudgetExceeded:
            raise
        except Exception as e:
            handle_internal_error(where, e)
            return None

    return wrapper  # type: ignore[return-value]
