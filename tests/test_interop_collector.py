"""From the Collector: `tokentrail otel attach` / `backfill` on the real server fixture.

`otel_traces` is created with the columns and types of the Collector's clickhouseexporter
default traces table (exporter/clickhouseexporter/internal/sqltemplates/traces_table.sql:
Map(LowCardinality(String), String) attributes, DateTime64(9) Timestamp, Duration in ns,
Nested Events/Links), and rows are shaped as the Collector writes them from OpenInference and
OpenLLMetry spans: every attribute value a string, ids in hex, StatusCode 'Unset'/'Error'.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from clocks import DEFAULT_NOW

import tokentrail
from tokentrail import cli, testing
from tokentrail.store import open_store
from tokentrail.usage import Usage

OTEL_TRACES = (Path(__file__).parent / "data" / "otel_traces.sql").read_text()  # the Collector's own DDL

COLS = ["Timestamp", "TraceId", "SpanId", "ParentSpanId", "SpanName", "SpanKind", "ServiceName", "ResourceAttributes",
        "ScopeName", "SpanAttributes", "Duration", "StatusCode"]

OI_LLM = {"openinference.span.kind": "LLM", "llm.provider": "openai", "llm.system": "openai",
          "llm.model_name": "gpt-4o-2024-08-06", "llm.invocation_parameters": '{"model": "gpt-4o"}',
          "llm.token_count.prompt": "1000", "llm.token_count.completion": "200", "llm.token_count.total": "1200",
          "llm.token_count.prompt_details.cache_read": "400", "llm.token_count.completion_details.reasoning": "50",
          "user.id": "alice", "session.id": "s-1", "input.value": "hi"}
OI_CHAIN = {"openinference.span.kind": "CHAIN", "input.value": "hi"}
LL_CHAT = {"traceloop.workflow.name": "", "gen_ai.provider.name": "openai", "gen_ai.operation.name": "chat",
           "gen_ai.request.model": "gpt-4o-mini", "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
           "gen_ai.usage.input_tokens": "321", "gen_ai.usage.output_tokens": "45", "gen_ai.usage.total_tokens": "366",
           "traceloop.association.properties.user_id": "bob"}
# Anthropic's way: input without the cache, told by the total
LL_ANTHROPIC = {"traceloop.workflow.name": "w", "gen_ai.system": "Anthropic", "llm.request.type": "chat",
                "gen_ai.request.model": "claude-3-5-haiku-20241022", "gen_ai.response.model": "claude-3-5-haiku-20241022",
                "gen_ai.usage.prompt_tokens": "100", "gen_ai.usage.completion_tokens": "20", "llm.usage.total_tokens": "720",
                "gen_ai.usage.cache_read_input_tokens": "500", "gen_ai.usage.cache_creation_input_tokens": "100"}
UNKNOWN = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "my-own-llm", "gen_ai.usage.input_tokens": "5",
           "gen_ai.usage.output_tokens": "1"}


def _row(i: int, attrs: dict[str, str], when: Any, scope: str, status: str = "Unset") -> list[Any]:
    return [when, f"{i:032x}", f"{i:016x}", "", f"span {i}", "Internal", "shop", {"service.name": "shop"}, scope, attrs,
            1_500_000_000, status]


@pytest.fixture
def server(tt_home: Any, ch_url: str, monkeypatch: pytest.MonkeyPatch, clock: Any) -> Iterator[Any]:
    monkeypatch.setenv("TOKENTRAIL_CLICKHOUSE_URL", ch_url)
    monkeypatch.setenv("TOKENTRAIL_PROJECT", "p")  # the CLI's project: the view's default
    rt = tokentrail.configure()
    with open_store(rt.settings) as store:
        store.client.command("CREATE DATABASE IF NOT EXISTS otel")
        store.client.command("DROP TABLE IF EXISTS otel.otel_traces")
        store.client.command(OTEL_TRACES)
        yield rt, store
        for view in ("otel_traces_to_spans",):
            store.client.command(f"DROP VIEW IF EXISTS {store.database}.{view}")
    rt.shutdown()
    testing.reset()


def _insert(store: Any, rows: list[list[Any]]) -> None:
    store.client.insert("otel.otel_traces", rows, column_names=COLS)


def _spans(store: Any) -> dict[str, dict[str, Any]]:
    res = store.query(f"SELECT * FROM {store.database}.spans")
    return {r["span_id"]: r for r in (dict(zip(res.column_names, row, strict=True)) for row in res.result_rows)}


def _cost(rt: Any, usage: Usage, model: str, provider: str | None) -> Any:
    return rt.prices.cost(usage, model, provider, DEFAULT_NOW)


def test_attach_view_prices_as_rows_arrive_and_backfill_once(server: Any, capsys: Any) -> None:
    rt, store = server
    day = DEFAULT_NOW - timedelta(days=1)
    _insert(store, [_row(1, OI_LLM, day, "openinference.instrumentation.langchain"), _row(2, OI_CHAIN, day, "openinference.instrumentation.langchain")])
    assert cli.main(["otel", "attach"]) == 0
    assert '"view"' in capsys.readouterr().out
    _insert(store, [
        _row(3, LL_CHAT, day, "opentelemetry.instrumentation.langchain"),
        _row(4, LL_ANTHROPIC, day, "opentelemetry.instrumentation.anthropic", status="Error"),
        _row(5, UNKNOWN, day, "my.genai"),
        _row(6, {"http.method": "GET"}, day, "opentelemetry.instrumentation.requests"),
    ])
    rows = _spans(store)
    assert sorted(rows) == [f"{i:016x}" for i in (3, 4, 5)]  # the view: new model calls only

    chat = rows[f"{3:016x}"]
    exp = _cost(rt, Usage(321, 45), "gpt-4o-mini-2024-07-18", "openai")
    assert (chat["framework"], chat["user_id"], chat["project"], chat["service_name"]) == ("openllmetry", "bob", "p", "shop")
    assert (chat["input_tokens"], chat["output_tokens"]) == (321, 45)
    assert (chat["cost_usd"], chat["input_cost_usd"], chat["output_cost_usd"]) == (exp.total_usd, exp.input_usd, exp.output_usd)
    assert chat["cost_usd"] == Decimal("0.00007515")  # 321 * $0.15/M + 45 * $0.60/M

    claude = rows[f"{4:016x}"]
    u = Usage(700, 20, 500, 100, 0)
    exp = _cost(rt, u, "claude-3-5-haiku-20241022", "anthropic")
    assert (claude["input_tokens"], claude["cache_read_tokens"], claude["cache_write_tokens"], claude["output_tokens"]) == (700, 500, 100, 20)
    assert claude["cost_usd"] == exp.total_usd and claude["cost_status"] == "priced"
    assert (claude["status"], claude["error_type"], claude["provider"]) == ("error", "_OTHER", "anthropic")

    unknown = rows[f"{5:016x}"]
    assert (unknown["cost_usd"], unknown["cost_status"], unknown["input_tokens"]) == (None, "unpriced", 5)

    # backfill: the row that was there before attach, once; the chain span never
    assert cli.main(["otel", "backfill", "--since", "30d"]) == 0
    assert '"inserted": 1' in capsys.readouterr().out
    rows = _spans(store)
    oi = rows[f"{1:016x}"]
    exp = _cost(rt, Usage(1000, 200, 400, 0, 50), "gpt-4o-2024-08-06", "openai")
    assert (oi["framework"], oi["request_model"], oi["response_model"], oi["user_id"], oi["session_id"]) == (
        "openinference", "gpt-4o", "gpt-4o-2024-08-06", "alice", "s-1")
    assert (oi["input_tokens"], oi["output_tokens"], oi["cache_read_tokens"], oi["reasoning_tokens"]) == (1000, 200, 400, 50)
    assert oi["cost_usd"] == exp.total_usd == Decimal("0.004")
    assert oi["timestamp"].replace(tzinfo=None) == day.replace(tzinfo=None)
    assert cli.main(["otel", "backfill", "--since", "30d"]) == 0
    assert '"inserted": 0' in capsys.readouterr().out
    assert len(_spans(store)) == 4
    # rollups downstream of tokentrail.spans see the view's rows (report reads them)
    spend = store.rows(f"SELECT sum(cost_usd) FROM {store.database}.spans")[0][0]
    assert spend == sum((r["cost_usd"] or 0) for r in rows.values())


def test_backfill_bad_since_and_bad_table(server: Any, capsys: Any) -> None:
    assert cli.main(["otel", "backfill", "--since", "a month"]) == 2
    assert "--since" in capsys.readouterr().err
    assert cli.main(["otel", "attach", "--table", "x; DROP TABLE y"]) == 2
    assert "--table" in capsys.readouterr().err


def _llm(model: str, provider: str, inp: int, out: int, cache_read: int = 0) -> dict[str, str]:
    return {"traceloop.workflow.name": "w", "gen_ai.provider.name": provider, "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model, "gen_ai.response.model": model, "gen_ai.usage.input_tokens": str(inp),
            "gen_ai.usage.output_tokens": str(out), "gen_ai.usage.cache_read_input_tokens": str(cache_read)}


def test_view_prices_each_span_at_its_own_dated_price(server: Any) -> None:
    """tokentrail.prices holds every period of a price: a span before a price change and one
    after are each priced at their own (genai-prices' deepseek-v4-flash changed on 2026-08-17
    and 2026-09-10; claude-sonnet-4-6 had a long-context tier until 2026-03-13). At 12:00 UTC:
    deepseek's peak-hour prices (06:00-10:00) are a time-of-day condition SQL does not apply."""
    from datetime import datetime, timezone

    rt, store = server
    assert cli.main(["otel", "attach"]) == 0
    at = {i: datetime(*d, tzinfo=timezone.utc) for i, d in enumerate(
        [(2026, 8, 1, 12), (2026, 8, 20, 12), (2026, 9, 15, 12), (2026, 8, 1, 13), (2026, 3, 1, 9), (2026, 3, 14, 9)], start=1)}
    attrs = {1: _llm("deepseek-v4-flash", "deepseek", 10000, 2000, 4000), 2: _llm("deepseek-v4-flash", "deepseek", 10000, 2000, 4000),
             3: _llm("deepseek-v4-flash", "deepseek", 10000, 2000, 4000), 4: _llm("deepseek-v4-flash", "deepseek", 10, 1, 3),
             5: _llm("claude-sonnet-4-6", "anthropic", 250000, 1000), 6: _llm("claude-sonnet-4-6", "anthropic", 250000, 1000)}
    _insert(store, [_row(i, attrs[i], at[i], "opentelemetry.instrumentation.langchain") for i in at])
    rows = _spans(store)
    got = {i: rows[f"{i:016x}"] for i in at}
    usage = {1: Usage(10000, 2000, 4000), 4: Usage(10, 1, 3), 5: Usage(250000, 1000)}
    for i in at:
        model, provider = ("deepseek-v4-flash", "deepseek") if i <= 4 else ("claude-sonnet-4-6", "anthropic")
        exp = rt.prices.cost(usage.get(i, usage[1] if i <= 3 else usage[5]), model, provider, at[i])
        assert (got[i]["cost_usd"], got[i]["input_cost_usd"], got[i]["output_cost_usd"], got[i]["price_id"]) == (
            exp.total_usd, exp.input_usd, exp.output_usd, exp.price_id), i
    # by hand: (6000 * in + 4000 * cache read + 2000 * out) / 1M at each period's prices
    assert [got[i]["cost_usd"] for i in (1, 2, 3)] == [Decimal("0.0014112"), Decimal("0.002668"), Decimal("0.002112")]
    # below the nano-dollar: 7 * $0.14/M + 3 * $0.0028/M = $0.0000009884 -> 0.000000988
    assert (got[4]["input_cost_usd"], got[4]["cost_usd"]) == (Decimal("0.000000988"), Decimal("0.000001268"))
    # 250k input tokens: the long-context step before 2026-03-13 ($6, $22.50 /M), none after ($3, $15)
    assert [got[i]["cost_usd"] for i in (5, 6)] == [Decimal("1.5225"), Decimal("0.765")]
    assert got[5]["price_id"] != got[6]["price_id"] and got[1]["price_version"].startswith("genai-prices")
