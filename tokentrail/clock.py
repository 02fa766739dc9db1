"""The wall clock, in one place.

Whatever asks "what time is it" without being handed a time reads it here: a new instance's
span clock (`Tokentrail.clock`), the queries' relative windows, budget status, the dashboard,
the CLI, the demo. `set_source()` replaces it for the whole process, so a test pins the
calendar once (see tests/clocks.py) and a replay can run at a chosen time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone

__all__ = ["now", "now_ns", "set_source"]

NS = 1_000_000_000

_source: Callable[[], int] = time.time_ns


def now_ns() -> int:
    """Nanoseconds since the epoch (UTC), from the current source."""
    return _source()


def now() -> datetime:
    """The current time, timezone-aware UTC, to the microsecond."""
    ns = _source()
    sec, rest = divmod(ns, NS)
    return datetime.fromtimestamp(sec, tz=timezone.utc).replace(microsecond=rest // 1000)


def set_source(source: Callable[[], int] | None) -> Callable[[], int]:
    """Read time from `source` (ns since the epoch); None restores the real clock. Returns the
    source that was in use, to restore it later."""
    global _source
    previous = _source
    _source = source if source is not None else time.time_ns
    return previous
