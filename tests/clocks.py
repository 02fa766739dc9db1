"""A fixed wall clock for tests, and the calendar edges they run at.

The `clock` fixture (conftest.py) installs a FixedClock as tokentrail's wall clock
(`tokentrail.clock.set_source`): the runtime's span clock, the queries' relative windows,
budget status, the dashboard and the CLI all read it. It moves only when a test moves it.

Tests that ask about "today", "this month" or a period run at every CALENDAR_EDGES moment:

    @at_calendar_edges
    def test_x(clock: FixedClock) -> None: ...
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

import pytest

from tokentrail.testing import DEFAULT_NOW, NS, FixedClock

__all__ = ["CALENDAR_EDGES", "DEFAULT_NOW", "DST_ZONE", "NS", "FixedClock", "at_calendar_edges", "installed"]

UTC = timezone.utc


# moments where "this month", "today" and forecasts go wrong when a test builds its data in the
# past (DEFAULT_NOW, mid-month, is where every other test runs)
CALENDAR_EDGES: dict[str, datetime] = {
    # 20 minutes into a month (the suite broke on 2026-12-01): "this month" holds almost nothing
    "month-start": datetime(2026, 12, 1, 0, 20, tzinfo=UTC),
    # 20 minutes before a month ends: the month's forecast has minutes left to run
    "month-end": datetime(2026, 11, 30, 23, 40, tzinfo=UTC),
    # 20 minutes before a year ends: next month is in another year
    "year-end": datetime(2026, 12, 31, 23, 40, tzinfo=UTC),
    # 30 minutes after New York's clocks went forward (2026-03-08 02:00 EST -> 03:00 EDT):
    # that local day is 23 hours long
    "dst-change": datetime(2026, 3, 8, 7, 30, tzinfo=UTC),
}

DST_ZONE = "America/New_York"  # the zone of the dst-change moment

at_calendar_edges = pytest.mark.parametrize("clock", list(CALENDAR_EDGES.values()), ids=list(CALENDAR_EDGES), indirect=True)


@contextmanager
def installed(clock: FixedClock) -> Iterator[FixedClock]:
    """Make `clock` tokentrail's wall clock inside the block (module-scoped fixtures use this;
    tests use the `clock` fixture)."""
    from tokentrail import clock as wall_clock

    previous = wall_clock.set_source(clock)
    try:
        yield clock
    finally:
        wall_clock.set_source(previous)
