"""The demo's virtual wall clock: `rt.clock = clock` puts every span and price date in the past.

Requests are placed on a traffic curve over the last N days (busier in working hours, quieter at
weekends, growing over the window); model calls then advance the clock by their latency, so
span durations and time-to-first-token look like a provider's.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

# Relative traffic per UTC hour: Europe's and the Americas' working days overlap at 13-17 UTC.
_DIURNAL = (
    0.20, 0.15, 0.12, 0.10, 0.10, 0.14, 0.25, 0.45, 0.70, 0.85, 0.90, 0.95,
    1.00, 1.10, 1.20, 1.20, 1.15, 1.05, 0.90, 0.75, 0.60, 0.45, 0.35, 0.25,
)  # fmt: skip
_WEEKEND = 0.4
_NS_PER_MS = 1_000_000


class DemoClock:
    """A clock in ns since the epoch (call it), placed with `at*` and moved with `advance`."""

    def __init__(self, start: datetime, end: datetime, rng: random.Random) -> None:
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("start and end must be timezone-aware")
        self.start = start
        self.end = end
        self._rng = rng
        self._now = _ns(start)
        # called by at_progress with (the time before, the request's time), in ns
        self.on_request: Callable[[int, int], None] | None = None
        # cumulative traffic weight per hour of the window: the curve requests are drawn from
        hours = max(1, int((end - start).total_seconds() // 3600))
        self._hours = hours
        day_noise: dict[int, float] = {}
        cum = 0.0
        self._cum: list[float] = []
        for h in range(hours):
            t = start + timedelta(hours=h)
            day = h // 24
            if day not in day_noise:
                day_noise[day] = rng.uniform(0.85, 1.15)
            w = _DIURNAL[t.hour] * (_WEEKEND if t.weekday() >= 5 else 1.0)
            w *= 0.75 + 0.5 * h / hours  # traffic grows over the window
            w *= day_noise[day]
            cum += w
            self._cum.append(cum)

    def __call__(self) -> int:
        return self._now

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._now / 1e9, tz=timezone.utc)

    def at(self, when: datetime | int) -> None:
        """Jump to a time (datetime, or ns since the epoch)."""
        self._now = when if isinstance(when, int) else _ns(when)

    def advance(self, ms: float) -> None:
        """Let `ms` milliseconds pass (a model's latency, a user's think time)."""
        self._now += max(0, int(ms * _NS_PER_MS))

    def quantile(self, p: float) -> datetime:
        """The time by which a share `p` (0..1) of the window's traffic has happened."""
        p = min(max(p, 0.0), 1.0)
        target = p * self._cum[-1]
        i = min(bisect.bisect_left(self._cum, target), self._hours - 1)
        lo = self._cum[i - 1] if i else 0.0
        frac = (target - lo) / (self._cum[i] - lo) if self._cum[i] > lo else 0.0
        return self.start + timedelta(hours=i + frac)

    def at_progress(self, p: float) -> datetime:
        """Place the next request at share `p` of the traffic curve (with a few minutes of
        jitter): call with `done / total` before each request to spread them over the window."""
        t = self.quantile(p) + timedelta(minutes=self._rng.uniform(-10, 10))
        t = min(max(t, self.start), self.end)
        before = self._now
        self.at(t)
        if self.on_request is not None:
            self.on_request(before, self._now)
        return t

    def at_random(self) -> datetime:
        """Place the next request at a random point of the traffic curve."""
        return self.at_progress(self._rng.random())


def _ns(when: datetime) -> int:
    # integer arithmetic: a float timestamp would lose microseconds
    delta = when - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000
