"""Budget definitions: validation (one-line errors), tokentrail.toml [[budgets]], periods, scopes."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import tokentrail
from tokentrail import Budget, ConfigError
from tokentrail.budgets import coerce_budgets
from tokentrail.budgets.model import compile_budget
from tokentrail.budgets.periods import NS, window
from tokentrail.config import resolve
from tokentrail.context import Attribution


def _ns(s: str, tz: str = "UTC") -> int:
    d = datetime.fromisoformat(s).replace(tzinfo=ZoneInfo(tz))
    return int(d.timestamp()) * NS


def test_budget_defaults_and_decimal_limit() -> None:
    b = Budget(name="search-team", limit_usd=100, scope={"team": "search"})
    assert b.limit_usd == Decimal(100) and isinstance(b.limit_usd, Decimal)
    assert (b.period, b.action, b.timezone, b.unpriced) == ("month", "block", "UTC", "allow")
    assert b.warn_at == (0.5, 0.8, 0.95)
    # floats go through str(): 0.1 is ten cents, not 0.1000000000000000055...
    assert Budget(name="x", limit_usd=0.1).limit_usd == Decimal("0.1")
    assert tokentrail.Budget is Budget


@pytest.mark.parametrize(
    ("kwargs", "field", "fix"),
    [
        ({"limit_usd": -5}, "budgets[b].limit_usd", "amount >= 0"),
        ({"limit_usd": "lots"}, "budgets[b].limit_usd", "amount >= 0"),
        ({"limit_usd": float("nan")}, "budgets[b].limit_usd", "amount >= 0"),
        ({"limit_usd": 1, "period": "fortnight"}, "budgets[b].period", "day, week, month, total, 24h, 7d, 30d"),
        ({"limit_usd": 1, "scope": {"customer": "acme"}}, "budgets[b].scope.customer", "user_id"),
        ({"limit_usd": 1, "scope": {"team": ""}}, "budgets[b].scope.team", '"*"'),
        ({"limit_usd": 1, "timezone": "Mars/Olympus"}, "budgets[b].timezone", "Europe/Paris"),
        ({"limit_usd": 1, "warn_at": (0.5, 1.5)}, "budgets[b].warn_at", "(0, 1]"),
        ({"limit_usd": 1, "warn_at": (0,)}, "budgets[b].warn_at", "(0, 1]"),
        ({"limit_usd": 1, "action": "deny"}, "budgets[b].action", "'block' or 'warn'"),
        ({"limit_usd": 1, "unpriced": "maybe"}, "budgets[b].unpriced", "'allow' or 'block'"),
        ({"limit_usd": 1, "max_output_tokens": 0}, "budgets[b].max_output_tokens", "token count"),
        ({"limit_usd": 1, "webhook_url": "hooks.example.com"}, "budgets[b].webhook_url", "https://"),
    ],
)
def test_validation_errors_are_one_line(kwargs: dict, field: str, fix: str) -> None:
    with pytest.raises(ConfigError) as e:
        Budget(name="b", **kwargs)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"tokentrail: {field}: ")
    assert fix in msg


def test_names_unique_and_tables_checked() -> None:
    with pytest.raises(ConfigError, match=r"budgets\[a\]: is defined twice"):
        coerce_budgets([Budget(name="a", limit_usd=1), {"name": "a", "limit_usd": 2}])
    with pytest.raises(ConfigError, match=r"budgets\[a\]\.limit: is not a budget setting"):
        coerce_budgets([{"name": "a", "limit": 2}])
    with pytest.raises(ConfigError, match=r"budgets\[0\]\.name: is missing"):
        coerce_budgets([{"limit_usd": 2}])


def test_toml_budgets(tt_home: Path, tmp_path: Path) -> None:
    (tmp_path / "tokentrail.toml").write_text(
        """
project = "shop"

[[budgets]]
name = "search-team"
limit_usd = 100
period = "month"
scope = { team = "search" }
warn_at = [0.5, 0.9]
timezone = "Europe/Paris"

[[budgets]]
name = "per-user"
limit_usd = 2.50
period = "24h"
scope = { user_id = "*" }
action = "warn"
unpriced = "block"
max_output_tokens = 512
"""
    )
    s = resolve()
    a, b = s.budgets
    assert (a.name, a.limit_usd, a.period, dict(a.scope), a.warn_at, a.timezone) == (
        "search-team", Decimal(100), "month", {"team": "search"}, (0.5, 0.9), "Europe/Paris",
    )
    assert (b.limit_usd, b.period, b.per_value, b.action, b.unpriced, b.max_output_tokens) == (
        Decimal("2.5"), "24h", True, "warn", "block", 512,
    )


def test_toml_budget_error_names_the_file_and_field(tt_home: Path, tmp_path: Path) -> None:
    (tmp_path / "tokentrail.toml").write_text('[[budgets]]\nname = "x"\nlimit_usd = 5\nperiod = "monthly"\n')
    with pytest.raises(ConfigError) as e:
        resolve()
    assert "budgets[x].period" in str(e.value) and "\n" not in str(e.value)


def test_calendar_windows_in_a_timezone() -> None:
    tz = "America/New_York"
    now = _ns("2026-03-18T23:30:00", tz)  # a Wednesday, local time
    d = window("day", tz, now)
    assert d.start == datetime(2026, 3, 18, 4, tzinfo=timezone.utc)  # local midnight, EDT (UTC-4)
    assert d.end_ns - d.start_ns == 24 * 3600 * NS
    w = window("week", tz, now)
    assert w.start.astimezone(ZoneInfo(tz)) == datetime(2026, 3, 16, tzinfo=ZoneInfo(tz))  # Monday
    m = window("month", tz, now)
    # March 2026 in New York starts in EST (UTC-5) and ends in EDT: 31 days minus the lost hour
    assert m.start == datetime(2026, 3, 1, 5, tzinfo=timezone.utc)
    assert m.end == datetime(2026, 4, 1, 4, tzinfo=timezone.utc)
    # the DST day is 23 hours long
    dst = window("day", tz, _ns("2026-03-08T12:00:00", tz))
    assert dst.end_ns - dst.start_ns == 23 * 3600 * NS
    dec = window("month", "UTC", _ns("2026-12-31T23:59:59"))
    assert dec.end == datetime(2027, 1, 1, tzinfo=timezone.utc)


def test_rolling_and_total_windows() -> None:
    now = _ns("2026-03-18T12:00:00")
    r = window("7d", "UTC", now)
    assert r.start_ns == now - 7 * 24 * 3600 * NS and r.end_ns is None
    assert window("24h", "UTC", now + NS).key == r.key  # rolling windows never "reset"
    assert window("total", "UTC", now).start_ns == 0


def test_scope_matching() -> None:
    team = compile_budget(0, Budget(name="t", limit_usd=1, scope={"team": "search", "tags": "beta"}))
    per_user = compile_budget(1, Budget(name="u", limit_usd=1, scope={"project": "shop", "user_id": "*"}))
    per_tag = compile_budget(2, Budget(name="g", limit_usd=1, scope={"tags": "*"}))
    everything = compile_budget(3, Budget(name="all", limit_usd=1))
    a = Attribution(project="shop", team="search", user_id="alice", tags=("beta", "eu"))
    assert team.keys(a) == [()]
    assert team.keys(Attribution(team="search", tags=("eu",))) == []
    assert per_user.keys(a) == [("alice",)]
    assert per_user.keys(Attribution(project="shop")) == []  # no user: outside a per-user budget
    assert per_tag.keys(a) == [("beta",), ("eu",)]
    assert everything.keys(Attribution()) == [()]
    # the limit itself always alerts, on top of warn_at
    assert [t for t, _ in team.thresholds] == [0.5, 0.8, 0.95, 1.0]
