"""Testing code that uses tokentrail (and tokentrail's own tests), as `logfire.testing` does.

    from tokentrail.testing import capture

    def test_my_chain(tmp_path):
        with capture(tmp_path) as cap:
            chain.invoke(...)            # instrumented as in production
            cap.rt.flush()
        [span] = [s for s in cap.spans if s.name == "chat gpt-4o"]
        assert cap.rows[0]["cost_usd"] == Decimal("0.002875")

`capture` configures the default instance with its spans also kept in memory (`spans`, and
`rows` as the store would get them), a fixed clock that moves only when the test moves it,
incremental trace and span ids, and resets the default instance afterwards (`reset`). Under
pytest, the `tt_capture` fixture does the same in the test's tmp_path (add
`pytest_plugins = ["tokentrail.testing"]` to a conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator

from . import clock as wall_clock
from . import runtime
from .exporters.rows import safe_row

__all__ = ["Capture", "FixedClock", "IncrementalIdGenerator", "capture", "reset"]

NS = 1_000_000_000
UTC = timezone.utc
DEFAULT_NOW = datetime(2026, 3, 18, 12, 0, tzinfo=UTC)  # a plain mid-month weekday


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
        from zoneinfo import ZoneInfo

        if isinstance(when, str):
            when = datetime.fromisoformat(when).replace(tzinfo=ZoneInfo(tz))
        self._now = _ns(when)

    def advance(self, seconds: float = 0, **delta: float) -> None:
        """Let time pass: seconds, or timedelta keywords (days=, hours=, minutes=)."""
        step = timedelta(seconds=seconds, **delta)
        self._now += (step.days * 86_400 + step.seconds) * NS + step.microseconds * 1000

    def __repr__(self) -> str:
        return f"FixedClock({self.now.isoformat()})"


class IncrementalIdGenerator(IdGenerator):
    """Trace ids and span ids 1, 2, 3, ...: the same spans get the same ids on every run."""

    def __init__(self) -> None:
        self._trace = 0
        self._span = 0

    def generate_trace_id(self) -> int:
        self._trace += 1
        return self._trace

    def generate_span_id(self) -> int:
        self._span += 1
        return self._span


class Capture:
    """What `capture` yields: the instance, its finished spans and their store rows, the clock."""

    def __init__(self, rt: runtime.Tokentrail, exporter: InMemorySpanExporter, clock: FixedClock) -> None:
        self.rt = rt
        self.exporter = exporter
        self.clock = clock

    @property
    def spans(self) -> list[ReadableSpan]:
        """Finished spans, in the order they ended."""
        return list(self.exporter.get_finished_spans())

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The finished spans as tokentrail.spans rows (docs/columns.md), in the order they ended."""
        return [safe_row(s) for s in self.exporter.get_finished_spans()]

    def clear(self) -> None:
        self.exporter.clear()


def reset() -> None:
    """Shut down the default instance and forget it (the next call configures a new one)."""
    runtime.reset()


@contextmanager
def capture(
    home: str | Path, *, clock: FixedClock | None = None, ids: IdGenerator | None = None, **settings: Any
) -> Iterator[Capture]:
    """The default instance, configured in `home` (its embedded store and spool), its spans also
    kept in memory, on a fixed clock (also tokentrail's wall clock inside the block) and with
    incremental ids; `settings` are configure() arguments. Reset when the block ends."""
    fixed = clock if clock is not None else FixedClock()
    previous = wall_clock.set_source(fixed)
    exporter = InMemorySpanExporter()
    settings.setdefault("project", "test")
    try:
        rt = runtime.configure(home=home, span_processors=(SimpleSpanProcessor(exporter),), **settings)
        generator = ids if ids is not None else IncrementalIdGenerator()
        rt.provider.id_generator = generator  # type: ignore[assignment]  # any IdGenerator works
        rt.tracer.id_generator = generator  # type: ignore[assignment]
        rt.clock = fixed
        yield Capture(rt, exporter, fixed)
    finally:
        reset()
        wall_clock.set_source(previous)


try:  # the pytest fixture, where pytest is installed
    import pytest
except ImportError:  # pragma: no cover - tokentrail.testing works without pytest
    pass
else:

    @pytest.fixture
    def tt_capture(tmp_path: Path) -> Iterator[Capture]:
        """`capture` in the test's tmp_path (see the module docstring)."""
        with capture(tmp_path / "tt-home") as cap:
            yield cap
