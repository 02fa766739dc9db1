"""Periods, relative windows, the month-end forecast and budget status at every calendar edge
(a month's start and end, a year's end, a DST change), on the fixed clock: the expected figures
are computed here from the spans' known times and costs, not asked of the code under test."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from clocks import CALENDAR_EDGES, DST_ZONE, NS, FixedClock, at_calendar_edges

import tokentrail
from tokentrail import Budget, runtime, testing
from tokentrail.budgets import budget_status
from tokentrail.budgets.periods import window
from tokentrail.config import resolve
from tokentrail.queries import Filters, month_forecast, totals
from tokentrail.store import open_store

UTC = timezone.utc
DAY = Decimal(86400)

# (how long before now, cost): within minutes, hours, days, just inside and outside 7 days, last month
SPEND: tuple[tuple[timedelta, Decimal], ...] = (
    (timedelta(minutes=10), Decimal("0.25")),
    (timedelta(hours=2), Decimal("0.5")),
    (timedelta(days=3), Decimal("1")),
    (timedelta(days=6, hours=23), Decimal("2")),
    (timedelta(days=8), Decimal("4")),
    (timedelta(days=40), Decimal("8")),
)


def _ns(when: datetime) -> int:
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * NS + delta.microseconds * 1000


def _write_spend(rt: runtime.Tokentrail, now: datetime) -> list[tuple[datetime, Decimal]]:
    calls = [(now - ago, cost) for ago, cost in SPEND]
    for when, cost in calls:
        span = rt.tracer.start_span(
            "chat m",
            start_time=_ns(when),
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "m",
                "tokentrail.team": "search",
                "tokentrail.cost.usd": str(cost),
                "tokentrail.cost.status": "priced",
            },
        )
        span.end(end_time=_ns(when) + 1_000_000)
    assert rt.flush()
    return calls


def _between(calls: list[tuple[datetime, Decimal]], start: datetime, end: datetime) -> Decimal:
    return sum((c for t, c in calls if start <= t < end), Decimal(0))


def _local_midnight(d: datetime, tz: str) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(tz))


def _period(period: str, tz: str, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the calendar period holding `now`, in UTC, by wall-clock arithmetic."""
    local = now.astimezone(ZoneInfo(tz))
    if period == "day":
        start = _local_midnight(local, tz)
        end = start + timedelta(days=1)
    elif period == "week":
        start = _local_midnight(local - timedelta(days=local.weekday()), tz)
        end = start + timedelta(days=7)
    else:
        start = _local_midnight(local.replace(day=1), tz)
        end = _local_midnight((local.replace(day=1) + timedelta(days=32)).replace(day=1), tz)
    # aware datetimes of one zone subtract by wall clock: compare them in UTC
    return start.astimezone(UTC), end.astimezone(UTC)


@at_calendar_edges
@pytest.mark.parametrize("tz", ["UTC", DST_ZONE])
@pytest.mark.parametrize("period", ["day", "week", "month"])
def test_calendar_periods(clock: FixedClock, tz: str, period: str) -> None:
    now_ns = clock()
    w = window(period, tz, now_ns)
    start, end = _period(period, tz, clock.now)
    assert (w.start, w.end) == (start, end)
    assert w.start_ns <= now_ns < w.end_ns
    # the next period starts exactly where this one ends; one ns before, it is still this one
    assert window(period, tz, w.end_ns).start_ns == w.end_ns
    assert window(period, tz, w.end_ns - 1).key == w.key
    if clock.now == CALENDAR_EDGES["dst-change"] and tz == DST_ZONE and period == "day":
        assert w.end_ns - w.start_ns == 23 * 3600 * NS  # clocks went forward: a 23-hour day
    if clock.now == CALENDAR_EDGES["year-end"] and tz == "UTC" and period == "month":
        assert w.end == datetime(2027, 1, 1, tzinfo=UTC)


@at_calendar_edges
def test_month_forecast_and_relative_windows(tt: runtime.Tokentrail, clock: FixedClock) -> None:
    now = clock.now
    calls = _write_spend(tt, now)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    month_end = (month_start + timedelta(days=32)).replace(day=1)
    rate_since = max(month_start, now - timedelta(days=7))
    spent = _between(calls, month_start, now)
    rate = _between(calls, rate_since, now) / (Decimal((now - rate_since).total_seconds()) / DAY)
    with open_store(tt.settings) as store:
        f = month_forecast(store)  # "now" is the clock's
        week = totals(store, Filters(since="7d"))
        day = totals(store, Filters(since="24h"))
    assert (f.month_start, f.month_end, f.now) == (month_start, month_end, now)
    assert f.spent_usd == spent
    assert f.daily_rate_usd == rate
    assert f.forecast_usd == spent + rate * Decimal((month_end - now).total_seconds()) / DAY
    assert sum((d for _, d in f.daily), Decimal(0)) == spent
    assert all(month_start <= d < month_end for d, _ in f.daily)
    assert week.cost_usd == _between(calls, now - timedelta(days=7), now + timedelta(days=1)) == Decimal("3.75")
    assert day.cost_usd == Decimal("0.75")


@at_calendar_edges
def test_budget_status_in_each_period(tt_home: Path, clock: FixedClock) -> None:
    now = clock.now
    rt = tokentrail.configure(home=tt_home, project="test")
    try:
        calls = _write_spend(rt, now)
    finally:
        rt.shutdown()
        testing.reset()
    budgets = [
        Budget(name="month-utc", limit_usd=100, period="month"),
        Budget(name="day-ny", limit_usd=100, period="day", timezone=DST_ZONE),
        Budget(name="week-ny", limit_usd=100, period="week", timezone=DST_ZONE),
        Budget(name="month-ny", limit_usd=100, period="month", timezone=DST_ZONE, scope={"team": "search"}),
    ]
    settings = resolve(budgets=budgets)
    with open_store(settings) as store:
        got = {s.budget: s for s in budget_status(store, settings)}  # at the clock's now
    for b in budgets:
        start, end = _period(b.period, b.timezone, now)
        spent = _between(calls, start, end)
        s = got[b.name]
        assert (s.period_start, s.period_end, s.spent_usd) == (start, end, spent), b.name
        elapsed, length = _ns(now) - _ns(start), _ns(end) - _ns(start)
        assert spent > 0  # the call 10 minutes ago is in every period at every edge
        assert s.forecast_usd == (spent * length / elapsed).quantize(Decimal("1e-9")), b.name
