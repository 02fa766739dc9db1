"""Internal error handling: telemetry must never break the user's program.

Like logfire, an internal error is logged and swallowed, except under pytest, where it is
re-raised so tests see it. BudgetExceeded is the one exception that is meant for the user.
"""

from __future__ import annotations

import functools
import logging
import os
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
