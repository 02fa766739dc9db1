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
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

NS = 1_000_000_000
UTC = timezone.utc

# a plain mid-month weekday: the default moment of the `clock` fixture
DEFAULT_NOW = datetime(2026, 3, 18, 12, 0, tzinfo=UTC)

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


def _ns(when: datetime) -> int:
    # integer arithmetic: a float timestamp would lose microseconds
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * NS + delta.microseconds * 1000


class FixedClock:
    """ns since the epoch, like time.time_ns, but only `set` and `advance` move it.

    `step_ns` > 0 moves it by that much on every read (spans get positive durations, in a
    deterministic way)."""

    def __init__(self, start: datetime = DEFAULT_NOW, *, step_ns: int = 0) -> None:
        if start.tzinfo is None:
            raise ValueError("a FixedClock starts at a timezone-aware datetime")
        self._now = _ns(start)
        self.step_ns = step_ns

    def __call__(self) -> int:
        now = self._now
        self._now += self.step_ns
        return now

    @property
    def now(self) -> datetime:
        """The current time (aware, UTC), without moving the clock."""
        sec, rest = divmod(self._now, NS)
        return datetime.fromtimestamp(sec, tz=UTC).replace(microsecond=rest // 1000)

    def set(self, when: datetime | str, tz: str = "UTC") -> None:
        """Jump to a time: an aware datetime, or an ISO string read in `tz`."""
        if isinstance(when, str):
            when = datetime.fromisoformat(when).replace(tzinfo=ZoneInfo(tz))
        self._now = _ns(when)

    def advance(self, seconds: float = 0, **delta: float) -> None:
        """Let time pass: seconds, or timedelta keywords (days=, hours=, minutes=)."""
        step = timedelta(seconds=seconds, **delta)
        self._now += (step.days * 86_400 + step.seconds) * NS + step.microseconds * 1000

    def __repr__(self) -> str:
        return f"FixedClock({self.now.isoformat()})"


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
