"""Budget status for the CLI and the dashboard: spent, % used, linear forecast, run-out date."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console

from tokentrail import Budget
from tokentrail.budgets import budget_status as status
from tokentrail.budgets import burndown, recent_events
from tokentrail.budgets.cli import budgets_command
from tokentrail.cli import main
from tokentrail.config import resolve
from tokentrail.exporters.rows import encode
from tokentrail.store import open_store, spool

UTC = timezone.utc


def _spend(home: Path, *rows: tuple[str, str, str]) -> None:
    """Model-call spans (timestamp, user_id, cost) into the spool, as an application writes them."""
    payload = encode(
        {
            "timestamp": ts,
            "span_id": f"{i:016x}",
            "operation": "chat",
            "project": "shop",
            "team": "search",
            "user_id": user,
            "cost_usd": cost,
            "cost_status": "priced",
        }
        for i, (ts, user, cost) in enumerate(rows)
    )
    spool.write(home / "spool", "spans", spool.new_batch_id(), payload)


def test_status_forecast_and_run_out(tt_home: Path) -> None:
    _spend(
        tt_home,
        ("2026-02-27 10:00:00", "alice", "50"),  # last month: not in March's figures
        ("2026-03-02 10:00:00", "alice", "12"),
        ("2026-03-05 10:00:00", "bob", "8"),
        ("2026-03-09 10:00:00", "alice", "5"),
    )
    settings = resolve(
        budgets=[
            Budget(name="team", limit_usd=40, scope={"team": "search"}),
            Budget(name="per-user", limit_usd=10, scope={"user_id": "*"}, warn_at=(0.5,)),
            Budget(name="ever", limit_usd=100, period="total"),
            Budget(name="rolling", limit_usd=10, period="7d"),
            Budget(name="nobody", limit_usd=5, scope={"session_id": "*"}),
        ]
    )
    now = datetime(2026, 3, 11, tzinfo=UTC)  # 10 of March's 31 days have passed
    with open_store(settings) as store:
        rows = {(s.budget, s.scope_value): s for s in status(store, settings, now)}
        assert list(rows) == [
            ("team", ""), ("per-user", "alice"), ("per-user", "bob"), ("ever", ""), ("rolling", ""), ("nobody", "*"),
        ]
        team = rows[("team", "")]
        assert (team.spent_usd, team.limit_usd, team.remaining_usd, team.calls) == (Decimal(25), Decimal(40), Decimal(15), 3)
        assert team.used == 0.625 and team.state == "warning"
        assert team.forecast_usd == Decimal("77.5")  # $25 in 10 days -> $77.50 in 31
        assert team.exhausts_at == datetime(2026, 3, 17, tzinfo=UTC)  # $15 left at $2.50 a day
        assert team.period_start == datetime(2026, 3, 1, tzinfo=UTC) and team.period_end == datetime(2026, 4, 1, tzinfo=UTC)
        alice, bob = rows[("per-user", "alice")], rows[("per-user", "bob")]
        assert (alice.spent_usd, alice.state, alice.exhausts_at) == (Decimal(17), "exceeded", None)
        assert (bob.spent_usd, bob.state) == (Decimal(8), "warning")
        assert bob.exhausts_at == datetime(2026, 3, 13, 12, tzinfo=UTC)  # $2 left at $0.80 a day
        ever = rows[("ever", "")]
        assert ever.spent_usd == Decimal(75) and ever.forecast_usd is None and ever.period_start is None
        # $75 since Feb 27 10:00 (11.58 days): $25 more takes another 3.86 days
        assert ever.exhausts_at is not None and ever.exhausts_at.date() == datetime(2026, 3, 14).date()
        rolling = rows[("rolling", "")]
        assert rolling.spent_usd == Decimal(13) and rolling.forecast_usd is None and rolling.state == "exceeded"
        nobody = rows[("nobody", "*")]
        assert (nobody.spent_usd, nobody.calls, nobody.state, nobody.exhausts_at) == (Decimal(0), 0, "ok", None)
        # quiet month: the linear forecast stays under the limit, no run-out this period
        quiet = status(store, resolve(budgets=[Budget(name="big", limit_usd=1000)]), now)[0]
        assert quiet.forecast_usd == Decimal("77.5") and quiet.exhausts_at is None

        points = burndown(store, settings, "per-user", "alice", now)
        assert points == [
            (datetime(2026, 3, 2, tzinfo=UTC), Decimal(12)),
            (datetime(2026, 3, 9, tzinfo=UTC), Decimal(17)),
        ]
        with pytest.raises(KeyError):
            burndown(store, settings, "missing", now=now)


def test_budgets_command_table(tt_home: Path) -> None:
    _spend(tt_home, ("2026-03-02 10:00:00", "alice", "12"), ("2026-03-05 10:00:00", "bob", "3"))
    settings = resolve(
        budgets=[
            Budget(name="per-user", limit_usd=10, scope={"user_id": "*"}),
            Budget(name="team", limit_usd=40, scope={"team": "search"}, action="warn"),
        ]
    )
    console = Console(record=True, width=200)
    assert budgets_command(settings, console, now=datetime(2026, 3, 11, tzinfo=UTC)) == 0
    out = console.export_text()
    rows = [[c.strip() for c in ln.split("│")[1:-1]] for ln in out.splitlines() if ln.startswith("│")]
    assert rows == [
        ["per-user", "alice", "month from 2026-03-01", "$12.00", "$10.00", "120%", "$37.20", "exhausted", "block"],
        ["per-user", "bob", "month from 2026-03-01", "$3.00", "$10.00", "30%", "$9.30", "not this period", "block"],
        # $15 in 10 days: $25 more at $1.50 a day runs out 16.67 days later
        # the forecast crosses the limit before the month ends: marked (the `forecast` alert's case)
        ["team", "(all)", "month from 2026-03-01", "$15.00", "$40.00", "38%", "$46.50 (over)", "2026-03-27 16:00", "warn"],
    ]


def test_tokentrail_budgets_cli(tt_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["budgets"]) == 0
    assert "no budgets configured" in capsys.readouterr().out
    (tmp_path / "tokentrail.toml").write_text('[[budgets]]\nname = "monthly"\nlimit_usd = 100\n')
    assert main(["budgets"]) == 0
    out = capsys.readouterr().out
    assert "monthly" in out and "$100.00" in out
    (tmp_path / "tokentrail.toml").write_text('[[budgets]]\nname = "monthly"\nlimit_usd = -1\n')
    assert main(["budgets"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "budgets[monthly].limit_usd" in err


def test_recent_events(tt_home: Path) -> None:
    settings = resolve()
    rows = [
        {"timestamp": "2026-03-02 10:00:00", "budget": "a", "event": "warn", "threshold": 0.5, "spent_usd": "1", "limit_usd": "2", "message": "half"},
        {"timestamp": "2026-03-03 10:00:00", "budget": "b", "event": "block", "spent_usd": "2", "limit_usd": "2", "message": "no"},
    ]
    spool.write(tt_home / "spool", "budget_events", spool.new_batch_id(), encode(rows))
    with open_store(settings) as store:
        assert [e["message"] for e in recent_events(store)] == ["no", "half"]
        assert [e["event"] for e in recent_events(store, budget="a")] == ["warn"]
        assert recent_events(store, since=datetime(2026, 3, 3, tzinfo=UTC))[0]["budget"] == "b"


def test_scope_values_are_parameters_not_sql_text(tt_home: Path) -> None:
    # a quote and a backslash in a scope value: matched exactly, never spliced into the SQL
    tricky = "o'brien\\' OR 1=1 --"
    _spend(tt_home, ("2026-03-02 10:00:00", tricky, "3"), ("2026-03-03 10:00:00", "bob", "4"))
    settings = resolve(
        budgets=[
            Budget(name="one", limit_usd=10, scope={"user_id": tricky}),
            Budget(name="per-user", limit_usd=10, scope={"user_id": "*"}),
        ]
    )
    now = datetime(2026, 3, 11, tzinfo=UTC)
    with open_store(settings) as store:
        rows = {(s.budget, s.scope_value): s.spent_usd for s in status(store, settings, now)}
        burn = burndown(store, settings, "per-user", tricky, now)
    assert rows == {("one", ""): Decimal(3), ("per-user", "bob"): Decimal(4), ("per-user", tricky): Decimal(3)}
    assert burn == [(datetime(2026, 3, 2, tzinfo=UTC), Decimal(3))]
