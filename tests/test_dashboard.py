"""The dashboard (Streamlit AppTest): every page against a store with known spans; each figure
shown equals what SQL returns for the same filters; the password gate; the read-only SQL page;
the empty store. The wall clock is fixed (the `clock` fixture); the pages whose figures depend on
"now" (the month-end forecast, relative ranges, budget periods) run at every calendar edge.

Spans are written through the real path: a configured runtime's tracer, the semconv attributes
that the instrumentation sets (usage and cost via instrumentation.common.record_usage), the
exporter, the spool, and the store's ingest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

pytest.importorskip("streamlit")
from clocks import CALENDAR_EDGES, DST_ZONE, NS, FixedClock, at_calendar_edges
from opentelemetry import trace as otel_trace
from streamlit.testing.v1 import AppTest

import tokentrail
from tokentrail import queries, runtime, testing
from tokentrail import semconv as sc
from tokentrail.context import Attribution
from tokentrail.dashboard import APP_PATH, PASSWORD_ENV, fmt
from tokentrail.dashboard import data as dash_data
from tokentrail.errors import format_usd
from tokentrail.instrumentation.common import record_error, record_usage, start_attributes
from tokentrail.pricing import PriceBook
from tokentrail.store import open_store
from tokentrail.usage import Usage

TIMEOUT = 60
pytestmark = pytest.mark.usefixtures("clock")  # the dashboard's "now" is the fixed clock's


@dataclass(frozen=True)
class Call:
    days_ago: float
    team: str
    feature: str
    user: str
    model: str
    provider: str
    usage: Usage | None
    operation: str = sc.OP_CHAT
    environment: str = "production"
    error: bool = False
    children: int = 1  # a retrieval span under the root, no cost


CALLS: tuple[Call, ...] = (
    Call(0.01, "search", "qa", "alice", "gpt-4o-mini", "openai", Usage(600, 80)),  # 14 minutes ago: this month, today
    Call(1, "search", "qa", "alice", "gpt-4o-mini", "openai", Usage(1200, 300, cache_read_tokens=600)),
    Call(1.5, "search", "qa", "alice", "gpt-4o-mini", "openai", Usage(800, 120)),
    Call(2, "search", "summaries", "bob", "gpt-4o", "openai", Usage(3000, 500, cache_read_tokens=1024)),
    Call(3, "growth", "chat", "carol", "claude-sonnet-4-5", "anthropic", Usage(5000, 800, 3000, 500)),
    Call(3.2, "growth", "chat", "carol", "claude-sonnet-4-5", "anthropic", Usage(4000, 0), error=True),
    Call(4, "growth", "chat", "dave", "gpt-4o-mini", "openai", Usage(700, 90, estimated=True)),
    Call(5, "growth", "search", "dave", "text-embedding-3-small", "openai", Usage(400, 0), operation=sc.OP_EMBEDDINGS),
    Call(6, "search", "qa", "erin", "my-local-llm", "ollama", Usage(900, 100)),  # unpriced
    Call(6.5, "search", "qa", "alice", "gpt-4o-mini", "openai", Usage(1500, 250), environment="staging"),
    Call(45, "search", "qa", "alice", "gpt-4o", "openai", Usage(10000, 1000)),  # outside 30 days
)


def write_calls(rt: runtime.Tokentrail, calls: tuple[Call, ...], now: datetime) -> None:
    """Each call: a chain root span, the model call under it, a retrieval span beside it."""
    tracer = rt.tracer
    for i, c in enumerate(calls):
        start = now - timedelta(days=c.days_ago)
        t0 = int(start.timestamp() * 1e9)
        who = Attribution(project="test", environment=c.environment, team=c.team, feature=c.feature, user_id=c.user, session_id=f"s-{c.user}")
        root = tracer.start_span(
            f"invoke_workflow pipeline-{i}",
            start_time=t0,
            attributes=start_attributes(operation=sc.OP_INVOKE_WORKFLOW, framework="langchain", attribution=who),
        )
        ctx = otel_trace.set_span_in_context(root)
        for k in range(c.children):
            r = tracer.start_span(
                "retrieval docs", context=ctx, start_time=t0 + 1_000_000,
                attributes=start_attributes(operation=sc.OP_RETRIEVAL, framework="langchain", attribution=who),
            )
            r.end(end_time=t0 + 5_000_000 + k)
        span = tracer.start_span(
            f"{c.operation} {c.model}", context=ctx, start_time=t0 + 6_000_000,
            attributes=start_attributes(operation=c.operation, framework="langchain", attribution=who, provider=c.provider, request_model=c.model),
        )
        record_usage(span, rt.prices, c.usage, model=c.model, provider=c.provider, when=start)
        if c.error:
            record_error(span, RuntimeError("rate limited"))
        span.end(end_time=t0 + 406_000_000)
        root.end(end_time=t0 + 410_000_000)
    assert rt.flush()


@pytest.fixture
def store_now(clock: FixedClock) -> datetime:
    return clock.now


def ts(when: datetime) -> str:
    """A UTC time as a ClickHouse DateTime64 literal (no SQL now(): the clock is fixed)."""
    return f"toDateTime64('{when.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S.%f}', 6, 'UTC')"


def days_before(now: datetime, days: int) -> str:
    return f"timestamp >= {ts(now - timedelta(days=days))}"


@pytest.fixture
def filled(tt: runtime.Tokentrail, store_now: datetime) -> Iterator[runtime.Tokentrail]:
    write_calls(tt, CALLS, store_now)
    dash_data.refresh()
    yield tt
    dash_data.refresh()


def sql(rt: runtime.Tokentrail, query: str) -> list[tuple[Any, ...]]:
    with open_store(rt.settings) as store:
        return store.rows(query)


def app(**query: str | list[str]) -> AppTest:
    at = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT)
    for k, v in query.items():
        at.query_params[k] = v
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


MODEL_CALLS = "operation IN ('chat', 'text_completion', 'embeddings')"


@at_calendar_edges
def test_overview_figures_equal_sql(filled: runtime.Tokentrail, store_now: datetime) -> None:
    at = app().run()
    assert_clean(at)
    m = metrics(at)
    last_30d = days_before(store_now, 30)
    spend, tokens, calls, unpriced, errors = sql(
        filled,
        f"SELECT sum(cost_usd), sum(input_tokens + output_tokens), count(), countIf(cost_status = 'unpriced'), "
        f"countIf(status = 'error') FROM tokentrail.spans WHERE {MODEL_CALLS} AND {last_30d}",
    )[0]
    assert calls == 10
    assert m["Spend"] == fmt.usd(Decimal(spend))
    assert m["Tokens"] == fmt.count(tokens)
    assert m["Model calls"] == fmt.count(calls)
    assert m["Cost per call"] == fmt.usd(Decimal(spend) / (calls - unpriced))
    assert m["Unpriced calls"] == "1"
    assert m["Errors"] == fmt.count(errors) == "1"
    # the top-models table holds the exact Decimal sums
    top = at.dataframe[0].value
    by_model = dict(sql(filled, f"SELECT request_model, sum(cost_usd) FROM tokentrail.spans WHERE {MODEL_CALLS} AND {last_30d} GROUP BY request_model"))
    for model, spent in zip(top["model"], top["spend_usd"], strict=True):
        assert spent == by_model[model]
    # the month-end forecast: this calendar month (UTC) at the clock, whatever the range
    month_start = store_now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    month_end = (month_start + timedelta(days=32)).replace(day=1)
    rate_since = max(month_start, store_now - timedelta(days=7))
    month, recent = sql(
        filled,
        f"SELECT sum(cost_usd), sumIf(cost_usd, timestamp >= {ts(rate_since)}) FROM tokentrail.spans "
        f"WHERE {MODEL_CALLS} AND timestamp >= {ts(month_start)} AND timestamp < {ts(store_now)}",
    )[0]
    assert month is not None  # the call 14 minutes ago is in this month at every edge
    day = Decimal(86400)
    rate = Decimal(recent) / (Decimal((store_now - rate_since).total_seconds()) / day)
    forecast = Decimal(month) + rate * Decimal((month_end - store_now).total_seconds()) / day
    assert m[f"Spent in {store_now:%B %Y}"] == fmt.usd(Decimal(month))
    assert m["Daily rate (last 7 days)"] == fmt.usd(rate)
    assert m["Forecast at month end"] == fmt.usd(forecast)


@at_calendar_edges
def test_url_filters_drive_every_figure_and_follow_the_widgets(filled: runtime.Tokentrail, store_now: datetime) -> None:
    at = app(range="7d", team="growth").run()
    assert_clean(at)
    last_7d = days_before(store_now, 7)
    spend, calls = sql(
        filled,
        f"SELECT sum(cost_usd), count() FROM tokentrail.spans WHERE {MODEL_CALLS} AND {last_7d} AND team = 'growth'",
    )[0]
    m = metrics(at)
    assert (m["Spend"], m["Model calls"]) == (fmt.usd(Decimal(spend)), fmt.count(calls))
    assert calls == 4
    # changing a widget rewrites the URL, so the view can be linked
    at.sidebar.multiselect(key="tt_f_model").set_value(["claude-sonnet-4-5"]).run()
    assert at.query_params["model"] == "claude-sonnet-4-5"
    assert at.query_params["team"] == "growth" and at.query_params["range"] == "7d"
    (spend2,) = sql(
        filled,
        f"SELECT sum(cost_usd) FROM tokentrail.spans WHERE {MODEL_CALLS} AND {last_7d} "
        "AND team = 'growth' AND request_model = 'claude-sonnet-4-5'",
    )[0]
    assert metrics(at)["Spend"] == fmt.usd(Decimal(spend2))
    # a filter that matches nothing says so, without an error
    at.sidebar.multiselect(key="tt_f_user").set_value(["alice"]).run()
    assert_clean(at)
    assert any("No model calls match" in i.value for i in at.info)


def test_breakdown_by_any_field_equals_sql(filled: runtime.Tokentrail) -> None:
    # a shared link opens straight on its page, with the page's own parameter
    at = app(by="feature", range="all").switch_page("views/breakdown.py").run()
    assert_clean(at)
    frame = at.dataframe[0].value
    expected = sql(
        filled,
        f"SELECT feature, sum(cost_usd), count(), sum(input_tokens) FROM tokentrail.spans WHERE {MODEL_CALLS} "
        "GROUP BY feature ORDER BY sum(cost_usd) DESC NULLS LAST, count() DESC, feature",
    )
    got = list(zip(frame["feature"], frame["spend_usd"], frame["calls"], frame["input_tokens"], strict=True))
    assert got == [(f, s, c, i) for f, s, c, i in expected]
    assert at.get("download_button"), "no CSV download"
    # tags: a field that lives in an array
    at.selectbox(key="tt_by").set_value("tag").run()
    assert_clean(at)
    assert at.query_params["by"] == "tag"


def test_breakdown_csv_is_exact() -> None:
    from tokentrail.dashboard import ui

    row = queries.ReportRow(calls=3, input_tokens=1, output_tokens=2, cache_read_tokens=0, cache_write_tokens=0,
                            reasoning_tokens=0, cost_usd=Decimal("0.000000123"), unpriced_calls=0, errors=0, key="x")
    text = ui.csv_bytes(ui.report_frame([row], "team")).decode()
    assert "x,0.000000123,100.0,3,0.000000041" in text


def test_traces_page_shows_the_most_expensive_trace_and_its_tree(filled: runtime.Tokentrail) -> None:
    at = app(range="all").run()
    at.switch_page("views/traces.py").run()
    assert_clean(at)
    listing = at.dataframe[0].value
    top = sql(
        filled,
        f"SELECT trace_id, sum(cost_usd) FROM tokentrail.spans WHERE {MODEL_CALLS} GROUP BY trace_id "
        "ORDER BY sum(cost_usd) DESC NULLS LAST LIMIT 3",
    )
    assert list(zip(listing["trace_id"][:3], listing["cost_usd"][:3], strict=True)) == top
    tree = at.dataframe[1].value
    (n,) = sql(filled, f"SELECT count() FROM tokentrail.spans WHERE trace_id = '{top[0][0]}'")[0]
    assert len(tree) == n == 3
    assert tree["span"][0].startswith("invoke_workflow") and tree["span"][2].startswith("└─ chat")
    assert metrics(at)["Trace cost"] == fmt.usd(top[0][1])
    # a linked trace opens directly
    other = top[2][0]
    at2 = app(range="all", trace=other).switch_page("views/traces.py").run()
    assert at2.selectbox(key="tt_trace").value == other
    assert metrics(at2)["Trace cost"] == fmt.usd(top[2][1])


def _per_call(rt: runtime.Tokentrail, where: str) -> list[dict[str, Any]]:
    with open_store(rt.settings) as store:
        res = store.query(f"SELECT * FROM tokentrail.spans WHERE {where}")
        return [dict(zip(res.column_names, r, strict=True)) for r in res.result_rows]


def test_efficiency_figures(filled: runtime.Tokentrail) -> None:
    at = app(range="all", whatif="anthropic/claude-3-5-haiku-latest").switch_page("views/efficiency.py").run()
    assert_clean(at)
    m = metrics(at)
    prices = PriceBook()
    # cache savings, call by call: cache reads at the input price minus at the cache-read price
    saved = Decimal(0)
    for r in _per_call(filled, f"{MODEL_CALLS} AND cache_read_tokens > 0 AND cost_usd IS NOT NULL"):
        u = Usage(r["cache_read_tokens"], 0, cache_read_tokens=r["cache_read_tokens"])
        full = prices.cost(Usage(r["cache_read_tokens"], 0), r["request_model"], r["provider"], r["timestamp"]).total_usd
        saved += full - prices.cost(u, r["request_model"], r["provider"], r["timestamp"]).total_usd
    assert saved > 0
    assert m["Saved by caching"] == fmt.usd(saved)
    assert at.dataframe[0].value["saved_usd"].sum() == saved
    est_calls, calls, err_cost = sql(
        filled,
        f"SELECT countIf(usage_estimated), count(), sumIf(cost_usd, status = 'error') FROM tokentrail.spans WHERE {MODEL_CALLS}",
    )[0]
    assert m["Calls with estimated usage"] == fmt.pct(est_calls, calls)
    assert m["Spent on failed calls"] == fmt.usd(Decimal(err_cost))
    # what-if: every chat call with a known cost, re-priced call by call on the chosen model
    actual = what = Decimal(0)
    for r in _per_call(filled, "operation = 'chat' AND cost_usd IS NOT NULL"):
        actual += r["cost_usd"]
        u = Usage(r["input_tokens"], r["output_tokens"], r["cache_read_tokens"], r["cache_write_tokens"], r["reasoning_tokens"])
        what += prices.cost(u, "claude-3-5-haiku-latest", "anthropic", r["timestamp"]).total_usd
    assert m["Actual spend"] == fmt.usd(actual)
    assert m["On claude-3-5-haiku-latest"] == fmt.usd(what)
    assert at.dataframe[2].value["what_if_usd"].sum() == what


def test_what_if_matches_per_call_pricing_across_tiers(filled: runtime.Tokentrail, store_now: datetime) -> None:
    """Calls on both sides of a tier threshold (a cliff on input tokens) re-price exactly."""
    big = (
        Call(0.5, "search", "qa", "zed", "gpt-4o", "openai", Usage(250_000, 1_000, cache_read_tokens=100_000)),
        Call(0.6, "search", "qa", "zed", "gpt-4o", "openai", Usage(150_000, 2_000, cache_write_tokens=10_000)),
    )
    write_calls(filled, big, store_now)
    prices = PriceBook()
    f = queries.Filters(user_id="zed")
    with open_store(filled.settings) as store:
        result = queries.what_if(store, f, "gemini-2.5-pro", "google", prices=prices)
        rows = _per_call(filled, "user_id = 'zed' AND operation = 'chat'")
    expected = sum(
        (prices.cost(Usage(r["input_tokens"], r["output_tokens"], r["cache_read_tokens"], r["cache_write_tokens"]),
                     "gemini-2.5-pro", "google", r["timestamp"]).total_usd for r in rows),
        Decimal(0),
    )
    assert result.calls == 2 and result.what_if_usd == expected
    assert result.actual_usd == sum((r["cost_usd"] for r in rows), Decimal(0))


def _budgets_page_after_event(rt: runtime.Tokentrail, **event: str) -> Any:
    """The Budgets page once one budget_events row (column -> SQL literal) is in the store."""
    with open_store(rt.settings) as store:
        store.client.command(f"INSERT INTO tokentrail.budget_events ({', '.join(event)}) VALUES ({', '.join(event.values())})")
    dash_data.refresh()
    at = app().run()
    at.switch_page("views/budgets.py").run()
    assert_clean(at)
    return at


@at_calendar_edges
def test_budgets_page(tt_home: Path, store_now: datetime) -> None:
    """A month budget in UTC and a day budget in New York, on the page at every calendar edge:
    spent, and the forecast over the period's real length (23 hours on the day clocks go forward)."""
    Path("tokentrail.toml").write_text(
        '[[budgets]]\nname = "search-team"\nlimit_usd = 0.01\nperiod = "month"\nscope = { team = "search" }\naction = "warn"\n'
        f'[[budgets]]\nname = "search-ny-day"\nlimit_usd = 1\nperiod = "day"\ntimezone = "{DST_ZONE}"\n'
        'scope = { team = "search" }\naction = "warn"\n'
    )
    rt = tokentrail.configure(home=tt_home, project="test")
    month_start = store_now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    month_end = (month_start + timedelta(days=32)).replace(day=1)
    local = store_now.astimezone(ZoneInfo(DST_ZONE)).date()
    day_start = datetime(local.year, local.month, local.day, tzinfo=ZoneInfo(DST_ZONE)).astimezone(timezone.utc)
    day_end = (datetime(local.year, local.month, local.day, tzinfo=ZoneInfo(DST_ZONE)) + timedelta(days=1)).astimezone(timezone.utc)
    if store_now == CALENDAR_EDGES["dst-change"]:
        assert day_end - day_start == timedelta(hours=23)
    try:
        write_calls(rt, CALLS, store_now)
        at = _budgets_page_after_event(
            rt, timestamp=ts(store_now), budget="'search-team'", event="'warn'", spent_usd="0.0051", limit_usd="0.01",
            period_start=ts(month_start), message="'search-team reached 50%'", event_id="'e1'",
        )  # fmt: skip

        def spent(start: datetime, end: datetime) -> Decimal:
            (total,) = sql(
                rt,
                "SELECT sum(cost_usd) FROM tokentrail.spans WHERE team = 'search' AND cost_usd IS NOT NULL "
                f"AND timestamp >= {ts(start)} AND timestamp < {ts(end)}",
            )[0]
            assert total is not None  # the call 14 minutes ago is in both periods at every edge
            return Decimal(total)

        def forecast(amount: Decimal, start: datetime, end: datetime) -> Decimal:
            elapsed, length = int((store_now - start).total_seconds()) * NS, int((end - start).total_seconds()) * NS
            return (amount * length / elapsed).quantize(Decimal("1e-9"))

        month, day = spent(month_start, month_end), spent(day_start, day_end)
        m = metrics(at)
        assert m["Spent"] == fmt.usd(month)
        assert m["Limit"] == "$0.0100"
        summary = at.dataframe[0].value
        assert list(summary["budget"]) == ["search-team", "search-ny-day"]
        assert list(summary["spent_usd"]) == [month, day]
        # shown as the CLI shows it; an empty cell is a dash, never "None"
        expected = [forecast(month, month_start, month_end), forecast(day, day_start, day_end)]
        assert list(summary["forecast_usd"]) == [f"${format_usd(f)}" for f in expected]
        assert list(summary["forecast"]) == ["over the limit" if f >= lim and s < lim else "-" for f, s, lim in zip(expected, (month, day), (Decimal("0.01"), Decimal(1)), strict=True)]
        assert "None" not in summary.astype(str).to_string()
        assert "allowance" not in summary.columns  # no carry, loan or allowance: no such column
        events = at.dataframe[1].value
        assert list(events["message"]) == ["search-team reached 50%"]
        assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")
    finally:
        rt.shutdown()
        testing.reset()
        dash_data.refresh()


def test_budgets_page_shows_a_rollover_budgets_carry(tt_home: Path, store_now: datetime) -> None:
    """A rollover budget's carry into this month (a budget_events row): in the table, and in the
    limit the page measures the spend against."""
    Path("tokentrail.toml").write_text(
        '[[budgets]]\nname = "savings"\nlimit_usd = 0.01\nperiod = "month"\nrollover = { periods = 1 }\naction = "warn"\n'
        '[[budgets]]\nname = "plain"\nlimit_usd = 1\nperiod = "month"\naction = "warn"\n'
    )
    rt = tokentrail.configure(home=tt_home, project="test")
    month_start = store_now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    try:
        write_calls(rt, CALLS, store_now)
        (spent,) = sql(rt, f"SELECT sum(cost_usd) FROM tokentrail.spans WHERE cost_usd IS NOT NULL AND timestamp >= {ts(month_start)}")[0]
        carry = 2 * Decimal(spent)  # carried in: the limit with it is twice this month's spend and $0.01
        at = _budgets_page_after_event(
            rt, timestamp=ts(month_start), budget="'savings'", event="'carry'", spent_usd="0", limit_usd="0.01",
            estimated_cost_usd=str(carry), period_start=ts(month_start), message="'carry'", event_id="'c1'",
        )  # fmt: skip
        summary = at.dataframe[0].value
        assert list(summary["budget"]) == ["savings", "plain"]
        assert list(summary["allowance"]) == [f"carry +${format_usd(carry)}", "-"]
        assert summary["used_pct"][0] == pytest.approx(float(Decimal(spent) / (carry + Decimal("0.01"))) * 100)
        assert 0 < summary["used_pct"][0] < 50  # against the limit with its carry, not $0.01 alone
    finally:
        rt.shutdown()
        testing.reset()
        dash_data.refresh()


def test_sql_page_is_read_only(filled: runtime.Tokentrail) -> None:
    at = app().run()
    at.switch_page("views/sql.py").run()
    assert_clean(at)
    (before,) = sql(filled, "SELECT count() FROM tokentrail.spans")[0]
    at.text_area(key="tt_sql").set_value("SELECT count() AS n FROM tokentrail.spans")
    _submit(at)
    assert_clean(at)
    assert at.dataframe[0].value["n"][0] == before
    at.text_area(key="tt_sql").set_value(
        "INSERT INTO tokentrail.spans (trace_id, span_id, name) VALUES ('x', 'y', 'evil')"
    )
    _submit(at)
    assert not at.exception
    assert len(at.error) == 1 and "read-only" in at.error[0].value and "nothing was changed" in at.error[0].value
    assert sql(filled, "SELECT count() FROM tokentrail.spans")[0][0] == before
    at.text_area(key="tt_sql").set_value("DROP TABLE tokentrail.spans")
    _submit(at)
    assert "read-only" in at.error[0].value
    assert sql(filled, "SELECT count() FROM tokentrail.spans")[0][0] == before


def _submit(at: AppTest) -> None:
    next(b for b in at.get("button") if getattr(b, "label", "") == "Run").click().run()


def test_password_gate(filled: runtime.Tokentrail, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "s3cret-pass")
    at = app().run()
    assert_clean(at)
    # nothing but the login form: no figures, no filters, no page list, no tables
    assert not at.metric and not at.dataframe and not at.sidebar.children
    assert not at.get("multiselect") and not at.get("selectbox")
    assert [t.label for t in at.text_input] == ["Password"]
    # a deep link to another page shows the same login form and nothing else
    deep = app(team="growth").switch_page("views/sql.py").run()
    assert not deep.text_area and not deep.dataframe and not deep.sidebar.children
    assert [t.label for t in deep.text_input] == ["Password"]
    at.text_input[0].input("wrong")
    _sign_in(at)
    assert [e.value for e in at.error] == ["Wrong password."]
    assert not at.metric and not at.dataframe
    at.text_input[0].input("s3cret-pass")
    _sign_in(at)
    assert_clean(at)
    assert "Spend" in metrics(at)
    at.run()  # stays signed in for the session
    assert "Spend" in metrics(at)


def _sign_in(at: AppTest) -> None:
    next(b for b in at.get("button") if getattr(b, "label", "") == "Sign in").click().run()


def test_empty_store_shows_how_to_get_data_in(tt: runtime.Tokentrail) -> None:
    dash_data.refresh()
    for page in ("views/overview.py", "views/breakdown.py", "views/traces.py", "views/efficiency.py", "views/budgets.py"):
        at = app().run()
        if page != "views/overview.py":
            at.switch_page(page).run()
        assert_clean(at)
        text = " ".join(c.value for c in at.code)
        assert "tokentrail demo" in text and "tokentrail.configure" in text
        assert any("no spans yet" in i.value for i in at.info)
    at.switch_page("views/sql.py").run()  # SQL still works on an empty store
    assert_clean(at)


def test_unreachable_server_is_a_message_not_a_traceback(tt_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("TOKENTRAIL_CLICKHOUSE_URL", f"http://default:secret@127.0.0.1:{port}/tokentrail")
    dash_data.refresh()
    at = app().run()
    assert not at.exception
    assert len(at.error) == 1
    message = at.error[0].value
    assert "cannot read the store" in message and "secret" not in message
    assert not at.metric


def test_reprice_follows_time_of_day_prices(filled: runtime.Tokentrail, store_now: datetime) -> None:
    """deepseek prices by time of day (off-peak): re-pricing goes by the call's half hour."""
    midnight = store_now.replace(hour=0, minute=0, second=0, microsecond=0)
    calls = (
        Call(0.25, "search", "qa", "yan", "deepseek-chat", "deepseek", Usage(20_000, 1_000, cache_read_tokens=15_000)),  # 18:00
        Call(0.6, "search", "qa", "yan", "deepseek-chat", "deepseek", Usage(30_000, 2_000, cache_read_tokens=5_000)),  # 09:36
    )
    write_calls(filled, calls, midnight)
    prices = PriceBook()
    with open_store(filled.settings) as store:
        rows = _per_call(filled, "user_id = 'yan' AND operation = 'chat'")
        costs = {r["cost_usd"] for r in rows}
        assert len(costs) == 2 and None not in costs
        wi = queries.what_if(store, queries.Filters(user_id="yan"), "deepseek-chat", "deepseek", prices=prices)
        cs = queries.cache_savings(store, queries.Filters(user_id="yan"), prices=prices)
    # re-pricing a model on itself gives back what was paid, call by call
    assert wi.what_if_usd == wi.actual_usd == sum(costs, Decimal(0))
    expected = Decimal(0)
    for r in rows:
        n = r["cache_read_tokens"]
        full = prices.cost(Usage(n, 0), "deepseek-chat", "deepseek", r["timestamp"]).total_usd
        expected += full - prices.cost(Usage(n, 0, cache_read_tokens=n), "deepseek-chat", "deepseek", r["timestamp"]).total_usd
    assert cs.saved_usd == expected > 0
