"""Rollups give the figures SQL over the raw spans gives: every question, every filter and
window (aligned or not to the rollups' hours and days), rollups on and off, and the rollups
really read where they can. On the real server (the embedded store has no rollups). The clock
is fixed (rollup_data.NOW)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from rollup_data import NOW, rows, write

from tokentrail import queries
from tokentrail.budgets import Budget
from tokentrail.budgets import status as budget_status
from tokentrail.config import resolve
from tokentrail.queries import Filters, source
from tokentrail.store import Schema, Store, open_store


@pytest.fixture(scope="module")
def filled(ch_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    import uuid

    settings = resolve(clickhouse_url=ch_server.url_for("rollups_" + uuid.uuid4().hex[:8]), home=tmp_path_factory.mktemp("rollups"))
    with open_store(settings, ingest=False) as store:
        assert store.rollups
        write(store.client, settings, rows())
    return settings


@pytest.fixture
def stores(filled: Any) -> Iterator[tuple[Store, Store]]:
    """(with rollups, the same store read raw only)."""
    with open_store(filled, ingest=False) as store:
        raw = Store(store.client, filled, Schema(store.database, None, frozenset({1, 2})))
        assert store.rollups and not raw.rollups
        yield store, raw


@pytest.fixture
def used(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The rollup each question read (None: the raw spans)."""
    seen: list[str | None] = []
    real = source.facts

    def spy(store: Any, *a: Any, **kw: Any) -> source.Facts:
        f = real(store, *a, **kw)
        if getattr(store, "rollups", False):  # the questions asked of the store with rollups
            seen.append(f.rollup)
        return f

    for mod in (source, queries.spend, queries.whatif, queries.traces, __import__("tokentrail.queries.budgets", fromlist=["x"])):
        monkeypatch.setattr(mod, "facts", spy)
    return seen


WINDOWS = {
    "30d, not aligned": Filters(since="30d"),
    "all time": Filters(),
    "aligned hours": Filters(since=NOW.replace(minute=0, second=0, microsecond=0) - timedelta(days=9), until=NOW.replace(minute=0, second=0, microsecond=0)),
    "aligned days": Filters(since=(NOW - timedelta(days=20)).date(), until=NOW.date()),
    "within one hour": Filters(since=NOW - timedelta(minutes=40), until=NOW - timedelta(minutes=3)),
    "teams and models": Filters(since="20d", team=("growth", ""), model=("gpt-4o", "my-local-llm")),
    "provider, environment": Filters(since="35d", until="2d", provider="openai", environment="production"),
    "a user (raw only)": Filters(since="30d", user_id="alice"),
}


def both(stores: tuple[Store, Store], fn: Any, *args: Any, **kw: Any) -> Any:
    rolled, raw = stores
    a, b = fn(rolled, *args, now=NOW, **kw), fn(raw, *args, now=NOW, **kw)
    assert a == b
    return a


@pytest.mark.parametrize("name", list(WINDOWS))
def test_spend_questions_equal_raw(stores: tuple[Store, Store], used: list[str | None], name: str) -> None:
    f = WINDOWS[name]
    t = both(stores, queries.totals, f)
    assert t.calls > 0 or name == "within one hour"
    for by in queries.GROUP_BY:
        both(stores, queries.report, by, f)
    for by in queries.BREAKDOWN_BY:
        both(stores, queries.breakdown, by, f)
    for bucket, by in (("hour", "model"), ("hour", "team"), ("day", "tag")):
        both(stores, queries.spend_series, f, by=by, bucket=bucket)
    for bucket in ("hour", "day"):  # the Overview's one scan: what its three questions answer
        o = both(stores, queries.overview, f, bucket=bucket, top=3)
        assert o.totals == t and o.top_models == queries.report(stores[0], "model", f, limit=3, now=NOW)
        assert o.series == queries.spend_series(stores[0], f, by="model", bucket=bucket, now=NOW)
    both(stores, queries.month_forecast, f)
    both(stores, queries.filter_values, f)
    both(stores, queries.estimated_share, f)
    both(stores, queries.error_costs, f)
    both(stores, queries.cache_savings, f)
    for model, provider in (("gpt-4o-mini", "openai"), ("gemini-2.5-pro", "google")):
        both(stores, queries.what_if, f, model, provider)
    top = both(stores, queries.top_traces, f, limit=20)
    for tr in top[:3]:
        assert stores[0] and queries.trace_spans(stores[0], tr.trace_id) == queries.trace_spans(stores[1], tr.trace_id)
    rolled = {u for u in used if u}
    only_time = all(getattr(f, k) is None for k in ("project", "environment", "team", "feature", "user_id", "model", "provider"))
    if "user" in name:  # the filter lists (by time only) and the users: no spend rollup has users
        assert rolled == {"spend_daily", "users_daily"}
    elif f.team is not None:  # the daily rollup has teams, the hourly one not
        assert rolled == {"spend_daily", "users_daily"}
    else:  # traces are ranked from their rollup when only time is filtered
        assert rolled == {"spend_hourly", "spend_daily", "users_daily"} | ({"traces_hourly"} if only_time else set())


def test_totals_equal_plain_sql(stores: tuple[Store, Store]) -> None:
    rolled, _ = stores
    since = NOW - timedelta(days=30)
    t = queries.totals(rolled, Filters(since="30d"), now=NOW)
    [(calls, inp, out, cost, unpriced, errors)] = rolled.rows(
        "SELECT count(), sum(input_tokens), sum(output_tokens), sum(cost_usd), countIf(cost_status = 'unpriced'), "
        f"countIf(status = 'error') FROM {rolled.table('spans')} WHERE operation IN ('chat', 'text_completion', 'embeddings') "
        "AND timestamp >= {s:DateTime64(6, 'UTC')} AND timestamp < {n:DateTime64(6, 'UTC')}",
        {"s": since.replace(tzinfo=None), "n": (NOW + timedelta(days=1)).replace(tzinfo=None)},
    )
    assert (t.calls, t.input_tokens, t.output_tokens, t.cost_usd, t.unpriced_calls, t.errors) == (calls, inp, out, Decimal(cost), unpriced, errors)
    assert calls > 100 and unpriced > 0 and errors > 0


BUDGETS = (
    Budget(name="all-month", limit_usd=5, period="month", action="warn"),
    Budget(name="search-week", limit_usd=1, period="week", scope={"team": "search"}, action="warn"),
    Budget(name="per-team-day-ny", limit_usd=1, period="day", scope={"team": "*"}, timezone="America/New_York", action="warn"),
    Budget(name="beta-30d", limit_usd=2, period="30d", scope={"tags": "beta"}, action="warn"),
    Budget(name="per-tag-total", limit_usd=50, period="total", scope={"tags": "*"}, action="warn"),
    Budget(name="qa-month-kolkata", limit_usd=3, period="month", scope={"feature": "qa"}, timezone="Asia/Kolkata", action="warn"),
    Budget(name="per-user-24h", limit_usd=1, period="24h", scope={"user_id": "*"}, action="warn"),
)


def test_budget_spend_and_burndown_equal_raw(stores: tuple[Store, Store], used: list[str | None]) -> None:
    rolled, raw = stores
    settings = replace(rolled.settings, budgets=BUDGETS)
    a = budget_status.status(rolled, settings, NOW)
    b = budget_status.status(raw, settings, NOW)
    assert a == b
    assert sum(1 for s in a if s.spent_usd > 0) >= 8
    for budget in BUDGETS:
        for s in [x for x in a if x.budget == budget.name][:3]:
            assert budget_status.burndown(rolled, settings, budget.name, s.scope_value, NOW) == budget_status.burndown(
                raw, settings, budget.name, s.scope_value, NOW
            )
    assert {"spend_daily", "spend_hourly"} <= {u for u in used if u}
    assert None in used  # per-user budgets have no rollup, and Kolkata's days are not whole UTC hours


def test_the_rollups_hold_every_span_once(stores: tuple[Store, Store]) -> None:
    rolled, _ = stores
    t = rolled.table
    spans = rolled.rows(f"SELECT count(), sum(input_tokens), sum(cost_usd) FROM {t('spans')}")[0]
    for table in ("spend_hourly", "spend_daily"):
        assert rolled.rows(f"SELECT sum(spans), sum(input_tokens), sum(cost_usd) FROM {t(table)}")[0] == spans
    assert rolled.rows(f"SELECT sum(spans) FROM {t('users_daily')}")[0][0] == spans[0]
    assert rolled.rows(f"SELECT uniqExact(trace_id) FROM {t('trace_index')}")[0][0] == rolled.rows(
        f"SELECT uniqExact(trace_id) FROM {t('spans')}"
    )[0][0]
    # the dimensions the query side believes each rollup has, are its columns
    from tokentrail.store.schema import SPEND_METRICS, SPEND_ROLLUPS

    for name, (bucket, dims) in SPEND_ROLLUPS.items():
        cols = [r[0] for r in rolled.rows(f"DESCRIBE TABLE {t(name)}")]
        assert sorted(cols) == sorted([bucket, *dims, *SPEND_METRICS])


def test_a_question_needing_hours_never_reads_the_daily_rollup(stores: tuple[Store, Store], used: list[str | None]) -> None:
    queries.spend_series(stores[0], Filters(since="10d"), by="team", bucket="hour", now=NOW)
    assert used == [None]  # team needs the daily rollup, hours need the hourly one: raw
    queries.spend_series(stores[0], Filters(since="10d"), by="model", bucket="hour", now=NOW)
    assert used[-1] == "spend_hourly"


def test_empty_store_is_zero_not_unknown(tmp_path: Path) -> None:
    with open_store(resolve(home=tmp_path)) as store:
        assert not store.rollups  # the embedded store reads the spans
        t = queries.totals(store, Filters(since="30d"), now=NOW)
        assert (t.calls, t.cost_usd, t.unpriced_calls) == (0, Decimal(0), 0)
        assert queries.top_traces(store, Filters(), now=NOW) == []
