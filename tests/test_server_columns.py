"""The exporter's columnar way into a server (exporters/columns.py): the same rows as span_row's
JSONEachRow, for the usual spans (the fast loop) and for every odd one (span_row's rules)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from tokentrail.config import Settings
from tokentrail.exporters import columns
from tokentrail.exporters.clickhouse import ClickHouseSpanExporter
from tokentrail.exporters.rows import encode_spans, span_row
from tokentrail.store import insert_settings
from tokentrail.store.migrations import sql_file

MODEL = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.output_tokens": 150,
    "gen_ai.usage.cache_read.input_tokens": 512,
    "tokentrail.cost.usd": "0.004500000",
    "tokentrail.cost.input_usd": "0.003000000",
    "tokentrail.cost.output_usd": "0.001500000",
    "tokentrail.cost.status": "priced",
    "tokentrail.team": "search",
    "user.id": "alice",
    "llm.note": "kept in attributes",
}
# attribute sets span_row treats apart: each must give the same row by the columnar way
ODD: list[dict[str, Any]] = [
    {**MODEL, "gen_ai.usage.input_tokens": -5},
    {**MODEL, "gen_ai.usage.output_tokens": 1.5},
    {**MODEL, "gen_ai.usage.input_tokens": True},
    {**MODEL, "tokentrail.cost.usd": 0.25},
    {**MODEL, "tokentrail.cost.usd": "0.0000000001"},
    {**MODEL, "tokentrail.cost.usd": "1e400"},
    {**MODEL, "tokentrail.tags": ["a", "b"]},
    {**MODEL, "tokentrail.usage.estimated": True},
    {**MODEL, "tokentrail.time_to_first_token_ms": 12.5},
    {**MODEL, "tokentrail.time_to_first_token_ms": "soon"},
    {**MODEL, "gen_ai.usage.cost": 0.0045},
    {**MODEL, "retries": 3, "stops": ["a", "b"]},
    {**MODEL, "gen_ai.request.model": 7},
    {**MODEL, "tokentrail.cost.usd": ""},
    {"gen_ai.operation.name": "invoke_workflow", "note": "é \u2603"},
]


def _spans() -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-api"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span(
        "invoke_workflow rag", attributes={"gen_ai.operation.name": "invoke_workflow"}
    ):
        with tracer.start_as_current_span("chat gpt-4o", attributes=MODEL):
            pass
        for attrs in ODD:
            with tracer.start_as_current_span("odd", attributes=attrs):
                pass
        with tracer.start_as_current_span("failed", attributes=MODEL) as s:
            s.set_status(Status(StatusCode.ERROR, "boom"))
        with tracer.start_as_current_span(
            "failed typed", attributes={**MODEL, "error.type": "TimeoutError"}
        ) as s:
            s.set_status(Status(StatusCode.ERROR))
    return list(exporter.get_finished_spans())


def _expected(span: ReadableSpan) -> list[Any]:
    """span_row's dict as the columns' values (defaults filled, time in microseconds)."""
    row = span_row(span)
    out = []
    for name, default in zip(columns.COLUMN_NAMES, columns._DEFAULTS, strict=True):
        v = row.get(name, default)
        if name == "timestamp":
            v = columns._micros(v)
        elif isinstance(v, Decimal):
            v = format(v, "f")
        out.append(v)
    return out


def test_columns_hold_span_rows_values_for_usual_and_odd_spans() -> None:
    spans = _spans()
    cols = columns.span_columns(spans)
    assert len(cols) == len(columns.COLUMN_NAMES)
    got = [[c[i] for c in cols] for i in range(len(spans))]
    want = [_expected(s) for s in spans]
    for g, w, s in zip(got, want, spans, strict=True):
        assert g == w, (s.name, dict(s.attributes or {}))
    first = dict(zip(columns.COLUMN_NAMES, got[0], strict=True))  # the fast loop's usual model call
    assert first["cost_usd"] == "0.004500000" and first["service_name"] == "shop-api"
    assert (
        first["attributes"] == {"llm.note": "kept in attributes"} and first["input_tokens"] == 1200
    )


def test_native_insert_stores_what_jsoneachrow_stores(ch_url: str, tmp_path: Path) -> None:
    """The exporter's Native insert and the JSONEachRow one give the same rows, to the nano-dollar."""
    spans = _spans()
    settings = Settings(clickhouse_url=ch_url, home=tmp_path / "home")
    exp = ClickHouseSpanExporter(settings)
    try:
        assert exp.export(spans) is SpanExportResult.SUCCESS
        assert exp.inserted_batches == 1 and exp.spooled_batches == 0
        client = exp._server_client()
        db = settings.database
        client.command(sql_file("001_spans.sql", table=f"`{db}`.by_json"))
        client.command(sql_file("005_spans_prices.sql", table=f"`{db}`.by_json"))
        client.raw_insert(
            f"`{db}`.by_json",
            None,
            insert_block=encode_spans(spans),
            fmt="JSONEachRow",
            settings=insert_settings(settings, "j"),
        )
        names = ", ".join(columns.COLUMN_NAMES)

        def rows(table: str) -> list[tuple[Any, ...]]:
            return [
                tuple(r)
                for r in client.query(
                    f"SELECT {names} FROM `{db}`.{table} ORDER BY span_id"
                ).result_rows
            ]

        native, json_rows = rows("spans"), rows("by_json")
        assert len(native) == len(spans) and native == json_rows
        total = client.query(
            f"SELECT sum(cost_usd), sum(input_tokens) FROM `{db}`.spans"
        ).result_rows[0]
        assert total == tuple(
            client.query(
                f"SELECT sum(cost_usd), sum(input_tokens) FROM `{db}`.by_json"
            ).result_rows[0]
        )
        # the rollups' views saw the Native block too
        hourly = client.query(f"SELECT sum(spans) FROM `{db}`.spend_hourly").result_rows[0][0]
        assert hourly == len(spans)
    finally:
        exp.shutdown()


def test_a_block_the_client_cannot_make_goes_the_json_way(
    ch_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(cols: Any) -> bytes:
        raise TypeError("cannot write")

    monkeypatch.setattr("tokentrail.exporters.clickhouse.native_block", broken)
    settings = Settings(clickhouse_url=ch_url, home=tmp_path / "home")
    exp = ClickHouseSpanExporter(settings)
    try:
        spans = _spans()
        assert exp.export(spans) is SpanExportResult.SUCCESS
        assert (exp.inserted_batches, exp.spooled_batches) == (1, 0)
        n = (
            exp._server_client()
            .query(f"SELECT count() FROM `{settings.database}`.spans")
            .result_rows[0][0]
        )
        assert n == len(spans)
    finally:
        exp.shutdown()
