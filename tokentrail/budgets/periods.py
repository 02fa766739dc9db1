"""Budget periods: calendar day / week / month in a time zone, total, and rolling windows.

All times are integer nanoseconds since the epoch (the runtime clock's unit), so the call path
never builds a datetime except when a calendar period ends.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

__all__ = ["CALENDAR", "PERIODS", "ROLLING", "Window", "window"]

NS = 1_000_000_000
CALENDAR = ("day", "week", "month")
ROLLING: dict[str, int] = {"24h": 24 * 3600 * NS, "7d": 7 * 24 * 3600 * NS, "30d": 30 * 24 * 3600 * NS}
PERIODS: tuple[str, ...] = (*CALENDAR, "total", *ROLLING)


@dataclass(frozen=True, slots=True)
class Window:
    """The spend window of a period at one instant: [start_ns, end_ns).

    For calendar periods `end_ns` is when the period ends (the next one starts); for `total`
    and rolling periods it is None (the window ends now). `key` names the period: it changes
    exactly when a calendar period rolls over, and never for `total` or rolling windows.
    """

    start_ns: int
    end_ns: int | None
    key: int

    @property
    def start(self) -> datetime:
        return datetime.fromtimestamp(self.start_ns / NS, tz=timezone.utc)

    @property
    def end(self) -> datetime | None:
        return None if self.end_ns is None else datetime.fromtimestamp(self.end_ns / NS, tz=timezone.utc)


@lru_cache(maxsize=64)
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def _midnight_ns(d: date, tz: zoneinfo.ZoneInfo) -> int:
    # aware local midnight -> epoch; zoneinfo resolves DST gaps/folds (fold=0: the first one)
    return round(datetime(d.year, d.month, d.day, tzinfo=tz).timestamp()) * NS


def _calendar_start(period: str, local: date) -> tuple[date, date]:
    if period == "day":
        return local, local + timedelta(days=1)
    if period == "week":  # ISO weeks: Monday
        start = local - timedelta(days=local.weekday())
        return start, start + timedelta(days=7)
    start = local.replace(day=1)
    nxt = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    return start, nxt


def window(period: str, tz_name: str, now_ns: int) -> Window:
    """The window of `period` containing `now_ns` (calendar periods in `tz_name`)."""
    if period == "total":
        return Window(0, None, 0)
    if period in ROLLING:
        return Window(now_ns - ROLLING[period], None, 0)
    tz = _zone(tz_name)
    local = datetime.fromtimestamp(now_ns // NS, tz=tz).date()
    first, nxt = _calendar_start(period, local)
    start, end = _midnight_ns(first, tz), _midnight_ns(nxt, tz)
    if now_ns < start:  # a DST gap at midnight can put "now" before the computed start
        first, nxt = _calendar_start(period, first - timedelta(days=1))
        start, end = _midnight_ns(first, tz), _midnight_ns(nxt, tz)
    return Window(start, end, start)


def length_ns(period: str, w: Window) -> int | None:
    """How long the period lasts: calendar periods their own length (DST included), rolling
    windows their duration, total None."""
    if period in ROLLING:
        return ROLLING[period]
    if w.end_ns is None:
        return None
    return w.end_ns - w.start_ns
