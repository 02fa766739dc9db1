"""tokentrail.queries: filters, report, totals and read-only SQL, on spans written by the real exporter."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from tokentrail import runtime
from tokentrail.errors import ConfigError
from tokentrail.queries import (
    Filters,
    SqlError,
    Totals,
    parse_time,
    parse_window,
    report,
    run_sql,
    totals,
)
from tokentrail.store import Store, open_store

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=timezone.utc)


def _ns(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000


def _span(rt: runtime.Tokentrail, name: str, when: datetime, attrs: dict[str, Any], *, error: bool = False) -> None:
    from opentelemetry.trace import Status, StatusCode

    span = rt.tracer.start_span(name, start_time=_ns(when), attributes=attrs)
    if error:
        span.set_attribute("error.type", "RateLimitError")
        span.set_status(Status(StatusCode.ERROR, "429"))
    span.end(end_time=_ns(when) + 250_000_000)


def _call(model: str, provider: str, team: str, user: str, cost: str | None, **tokens: int) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "gen_ai.provider.name": provider,
        "tokentrail.team": team,
        "tokentrail.feature": "search",
        "tokentrail.project": "shop",
        "user.id": user,
        "gen_ai.usage.input_tokens": tokens.get("inp", 0),
        "gen_ai.usage.output_tokens": tokens.get("out", 0),
        "gen_ai.usage.cache_read.input_tokens": tokens.get("cr", 0),
        "gen_ai.usage.cache_write.input_tokens": tokens.get("cw", 0),
        "gen_ai.usage.reasoning.output_tokens": tokens.get("rs", 0),
        "tokentrail.cost.status": "priced" if cost is not None else "unpriced",
    }
    if cost is not None:
        attrs["tokentrail.cost.usd"] = cost
    return attrs


@pytest.fixture
def store(tt: runtime.Tokentrail) -> Iterator[Store]:
    """Seven model calls, one chain span and one retrieval span, over three days."""
    d = timedelta(days=1)
    _span(tt, "chat gpt-4o", NOW - 3 * d, _call("gpt-4o", "openai", "search", "alice", "0.002875000", inp=1000, out=100, cr=500))
    _span(tt, "chat gpt-4o", NOW - 2 * d, _call("gpt-4o", "openai", "search", "bob", "0.001000000", inp=200, out=50))
    _span(tt, "chat gpt-4o", NOW - 1 * d, _call("gpt-4o", "openai", "growth", "alice", "0.000123456", inp=10, out=10))
    _span(
        tt,
        "chat claude-sonnet-4",
        NOW - 2 * d,
        _call("claude-sonnet-4", "anthropic", "growth", "carol", "0.010000001", inp=3000, out=200, cr=2000, cw=500),
    )
    _span(tt, "chat o3-mini", NOW - 1 * d, _call("o3-mini", "openai", "search", "bob", "0.004400000", inp=100, out=1000, rs=800))
    _span(tt, "chat acme-llm-7b", NOW - 1 * d, _call("acme-llm-7b", "ollama", "platform", "dave", None, inp=40, out=60))
    # a failed call: no usage, no cost
    err = _call("gpt-4o", "openai", "search", "bob", None)
    err["tokentrail.cost.status"] = "no_usage"
    _span(tt, "chat gpt-4o", NOW - 1 * d, err, error=True)
    # spans that are not model calls carry no cost and are not calls
    _span(tt, "retrieval docs", NOW - 1 * d, {"gen_ai.operation.name": "retrieval", "tokentrail.team": "search"})
    _span(tt, "chain RunnableSequence", NOW - 1 * d, {"gen_ai.operation.name": "chain", "gen_ai.request.model": "gpt-4o"})
    assert tt.flush()
    with open_store(tt.settings) as s:
        yield s


def test_report_by_model_exact(store: Store) -> None:
    rows = {r.key: r for r in report(store, "model", Filters())}
    assert list(rows) == ["claude-sonnet-4", "o3-mini", "gpt-4o", "acme-llm-7b"]  # most expensive first
    g = rows["gpt-4o"]
    assert (g.calls, g.input_tokens, g.output_tokens, g.cache_read_tokens, g.errors, g.unpriced_calls) == (4, 1210, 160, 500, 1, 0)
    assert g.cost_usd == Decimal("0.003998456")
    assert isinstance(g.cost_usd, Decimal)
    c = rows["claude-sonnet-4"]
    assert (c.cache_read_tokens, c.cache_write_tokens, c.cost_usd) == (2000, 500, Decimal("0.010000001"))
    assert rows["o3-mini"].reasoning_tokens == 800
    # an unknown model is unknown, never $0
    a = rows["acme-llm-7b"]
    assert (a.calls, a.unpriced_calls, a.cost_usd) == (1, 1, None)


def test_totals_and_group_sums_agree(store: Store) -> None:
    t = totals(store)
    assert isinstance(t, Totals)
    assert t.calls == 7
    assert t.cost_usd == Decimal("0.002875") + Decimal("0.001") + Decimal("0.000123456") + Decimal("0.010000001") + Decimal("0.0044")
    assert (t.unpriced_calls, t.errors, t.input_tokens, t.output_tokens) == (1, 1, 4350, 1420)
    for by in ("team", "user", "provider", "feature", "project", "day"):
        rows = report(store, by)
        assert sum(r.calls for r in rows) == t.calls, by
        assert sum(r.cost_usd or Decimal(0) for r in rows) == t.cost_usd, by
    # the same question in SQL
    assert store.rows("SELECT sum(cost_usd) FROM tokentrail.spans") == [(t.cost_usd,)]


def test_filters(store: Store) -> None:
    by_team = {r.key: (r.calls, r.cost_usd) for r in report(store, "team")}
    assert by_team == {
        "growth": (2, Decimal("0.010123457")),
        "search": (4, Decimal("0.008275")),
        "platform": (1, None),
    }
    only = report(store, "user", Filters(team="search", model="gpt-4o"))
    assert {r.key: r.calls for r in only} == {"alice": 1, "bob": 2}
    many = totals(store, Filters(user_id=["alice", "carol"]))
    assert (many.calls, many.cost_usd) == (3, Decimal("0.012998457"))
    # time: a relative window is measured back from `now`
    recent = totals(store, Filters(since="36h"), now=NOW)
    assert recent.calls == 4
    window = totals(store, Filters(since=NOW - timedelta(days=2, hours=1), until=NOW - timedelta(days=1, hours=1)))
    assert (window.calls, window.cost_usd) == (2, Decimal("0.011000001"))
    days = report(store, "day")
    assert [r.key for r in days] == ["2026-03-12", "2026-03-13", "2026-03-14"]  # oldest first
    # nothing matches: no calls cost $0 (not unknown)
    none = totals(store, Filters(team="nobody"))
    assert (none.calls, none.cost_usd) == (0, Decimal(0))
    # a value that would be SQL if pasted is just a value
    assert totals(store, Filters(team="x' OR 1=1 --")).calls == 0


def test_filters_render_parameters_not_sql() -> None:
    w = Filters(since="7d", team="growth", model=["gpt-4o", "o3-mini"]).where(now=NOW)
    assert w.sql == (
        "timestamp >= {f_since:DateTime64(6, 'UTC')} AND team = {f_team:String} "
        "AND request_model IN {f_model:Array(String)}"
    )
    assert w.params == {"f_since": datetime(2026, 3, 8, 12, 0), "f_team": "growth", "f_model": ["gpt-4o", "o3-mini"]}
    assert Filters().where().sql == "1"
    both = Filters(team="a").where().and_("operation = {op:String}", op="chat")
    assert both.sql == "team = {f_team:String} AND operation = {op:String}" and both.params == {"f_team": "a", "op": "chat"}


def test_time_parsing() -> None:
    assert parse_window("7d") == timedelta(days=7)
    assert parse_window("24h") == timedelta(hours=24)
    assert parse_window("30m") == timedelta(minutes=30)
    assert parse_window("2w") == timedelta(weeks=2)
    assert parse_time("2026-01-31") == datetime(2026, 1, 31, tzinfo=timezone.utc)
    assert parse_time("2026-01-31T10:30:00+02:00") == datetime(2026, 1, 31, 8, 30, tzinfo=timezone.utc)
    assert parse_time("1d", now=NOW) == NOW - timedelta(days=1)
    for bad in ("7x", "yesterday", "", "-3d"):
        with pytest.raises(ConfigError) as e:
            parse_time(bad)
        assert "\n" not in str(e.value) and "7d" in str(e.value)
    with pytest.raises(ConfigError, match="not before"):
        Filters(since="2026-02-01", until="2026-01-01").where()


def test_bad_group_is_a_config_error(store: Store) -> None:
    with pytest.raises(ConfigError, match="use one of model"):
        report(store, "color")


def test_run_sql_reads(store: Store) -> None:
    res = run_sql(
        store, "SELECT request_model, sum(cost_usd) AS cost FROM tokentrail.spans WHERE operation = 'chat' GROUP BY 1 ORDER BY 1;"
    )
    assert res.columns == ["request_model", "cost"]
    assert res.types[1].startswith("Nullable(Decimal")
    assert dict(res.rows)["gpt-4o"] == Decimal("0.003998456")
    assert res.records()[0] == {"request_model": "acme-llm-7b", "cost": None}
    # parameters are server-side
    n = run_sql(store, "SELECT count() FROM tokentrail.spans WHERE user_id = {u:String}", parameters={"u": "bob"})
    assert n.rows == [(3,)]


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO tokentrail.spans (span_id, request_model) VALUES ('x', 'evil')",
        "DROP TABLE tokentrail.spans",
        "TRUNCATE TABLE tokentrail.spans",
        "ALTER TABLE tokentrail.spans DELETE WHERE 1",
        "SET readonly = 0; DROP TABLE tokentrail.spans",
        "SELECT 1 SETTINGS readonly = 0",
        "DROP TABLE tokentrail.spans --",
        "CREATE TABLE tokentrail.evil (a Int8) ENGINE = Memory",
    ],
)
def test_run_sql_refuses_writes_and_changes_nothing(store: Store, sql: str) -> None:
    before = store.rows("SELECT count(), sum(cost_usd) FROM tokentrail.spans")
    with pytest.raises(SqlError) as e:
        run_sql(store, sql)
    assert e.value.code == 164
    assert "read-only" in str(e.value) and "nothing was changed" in str(e.value)
    assert "\n" not in str(e.value)
    assert store.rows("SELECT count(), sum(cost_usd) FROM tokentrail.spans") == before
    assert store.rows("SELECT count() FROM system.tables WHERE database = 'tokentrail' AND name = 'evil'") == [(0,)]
    # the store's own client did not inherit read-only mode: it still ingests and writes
    store.client.command("INSERT INTO tokentrail.spans (span_id, request_model) VALUES ('probe', 'probe')")
    assert store.rows("SELECT count() FROM tokentrail.spans WHERE span_id = 'probe'") == [(1,)]


def test_run_sql_errors_are_one_line_with_a_fix(store: Store) -> None:
    cases = {
        "SELEC 1": "check the SQL syntax",
        "SELECT * FROM tokentrail.nope": "SHOW TABLES FROM tokentrail",
        "SELECT nosuch FROM tokentrail.spans": "DESCRIBE tokentrail.spans",
        "SELECT 1 FORMAT JSON": "--format",
        "  ;  ": "give one",
    }
    for sql, fix in cases.items():
        with pytest.raises(SqlError) as e:
            run_sql(store, sql)
        msg = str(e.value)
        assert msg.startswith("tokentrail: sql: ") and fix in msg and "\n" not in msg, msg
        assert "FORMAT Native" not in msg


def test_run_sql_writes_when_asked(store: Store) -> None:
    run_sql(store, "CREATE TABLE tokentrail.scratch (a Int8) ENGINE = Memory", readonly=False)
    assert store.rows("SELECT count() FROM system.tables WHERE database = 'tokentrail' AND name = 'scratch'") == [(1,)]


def test_activity_counts_rows_and_blocked_calls_since_a_time(tt: runtime.Tokentrail) -> None:
    from tokentrail.queries.activity import blocked_calls_by_model, budget_event_counts, row_counts

    d = timedelta(days=1)
    for when, model in ((NOW - 3 * d, "gpt-4o"), (NOW - d, "gpt-4o"), (NOW - d, "o3-mini"), (NOW - d, "gpt-4o")):
        attrs = _call(model, "openai", "search", "bob", None)
        attrs.update({"tokentrail.cost.status": "no_usage", "error.type": "BudgetExceeded"})
        _span(tt, f"chat {model}", when, attrs)
    _span(tt, "chat gpt-4o", NOW - d, _call("gpt-4o", "openai", "search", "bob", "0.001000000", inp=200, out=50))
    assert tt.flush()
    with open_store(tt.settings) as s:
        assert row_counts(s) == {"spans": 5, "budget_events": 0, "lost_spans": 0}
        assert blocked_calls_by_model(s, NOW - 2 * d) == [("gpt-4o", 2), ("o3-mini", 1)]
        assert blocked_calls_by_model(s, NOW - 4 * d) == [("gpt-4o", 3), ("o3-mini", 1)]
        assert budget_event_counts(s, NOW - 4 * d) == {}
