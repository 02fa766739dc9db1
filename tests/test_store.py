"""The store: numbered migrations, the spool's exactly-once ingest, concurrent writer and reader."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tokentrail.config import resolve
from tokentrail.exporters.rows import encode
from tokentrail.store import open_store, spool
from tokentrail.store.migrations import MIGRATIONS

EXPECTED_SPANS_COLUMNS = {
    "timestamp": "DateTime64(6, 'UTC')",
    "duration_ms": "Float64",
    "trace_id": "String",
    "span_id": "String",
    "parent_span_id": "String",
    "name": "LowCardinality(String)",
    "operation": "LowCardinality(String)",
    "framework": "LowCardinality(String)",
    "service_name": "LowCardinality(String)",
    "project": "LowCardinality(String)",
    "environment": "LowCardinality(String)",
    "team": "LowCardinality(String)",
    "feature": "LowCardinality(String)",
    "user_id": "String",
    "session_id": "String",
    "tags": "Array(String)",
    "provider": "LowCardinality(String)",
    "request_model": "LowCardinality(String)",
    "response_model": "LowCardinality(String)",
    "input_tokens": "UInt64",
    "output_tokens": "UInt64",
    "cache_read_tokens": "UInt64",
    "cache_write_tokens": "UInt64",
    "reasoning_tokens": "UInt64",
    "usage_estimated": "Bool",
    "input_cost_usd": "Nullable(Decimal(18, 9))",
    "output_cost_usd": "Nullable(Decimal(18, 9))",
    "cost_usd": "Nullable(Decimal(18, 9))",
    "cost_status": "LowCardinality(String)",
    "status": "LowCardinality(String)",
    "error_type": "String",
    "time_to_first_token_ms": "Nullable(Float64)",
    "attributes": "Map(String, String)",
    # migration 5
    "cache_write_1h_tokens": "UInt64",
    "web_search_requests": "UInt64",
    "service_tier": "LowCardinality(String)",
    "fees_usd": "Nullable(Decimal(18, 9))",
    "price_id": "LowCardinality(String)",
    "price_version": "LowCardinality(String)",
}
EXPECTED_PRICES_COLUMNS = {
    "price_id": "String", "version": "LowCardinality(String)", "source": "LowCardinality(String)",
    "provider": "LowCardinality(String)", "model": "String", "match_rule": "String", "tier": "LowCardinality(String)",
    "conditions": "String", "valid_from": "DateTime64(6, 'UTC')", "valid_to": "DateTime64(6, 'UTC')",
    "min_input_tokens": "UInt64", "input_mtok": "Nullable(Decimal(38, 12))", "output_mtok": "Nullable(Decimal(38, 12))",
    "cache_read_mtok": "Nullable(Decimal(38, 12))", "cache_write_mtok": "Nullable(Decimal(38, 12))",
    "cache_write_1h_mtok": "Nullable(Decimal(38, 12))", "reasoning_mtok": "Nullable(Decimal(38, 12))",
    "web_search_kcount": "Nullable(Decimal(38, 12))", "requests_kcount": "Nullable(Decimal(38, 12))",
}  # fmt: skip


def _row(span_id: str, cost: str | None = "0.000000001") -> dict:
    return {
        "timestamp": "2026-11-01 12:00:00.000000",
        "trace_id": "t" * 32,
        "span_id": span_id,
        "name": "chat gpt-4o",
        "operation": "chat",
        "request_model": "gpt-4o",
        "input_tokens": 10,
        "cost_usd": cost,
    }


def test_migrations_give_the_public_schema(tt_home: Path) -> None:
    settings = resolve()
    with open_store(settings) as store:
        cols = {r[0]: r[1] for r in store.rows("DESCRIBE TABLE tokentrail.spans")}
        for name, type_ in EXPECTED_SPANS_COLUMNS.items():
            assert cols.get(name) == type_, name
        applied = store.rows("SELECT number, name FROM tokentrail.migrations ORDER BY number")
        assert [a[0] for a in applied] == [m.number for m in MIGRATIONS]
        assert [a[0] for a in applied] == list(range(1, len(MIGRATIONS) + 1))  # numbered, no gaps
        prices = {r[0]: r[1] for r in store.rows("DESCRIBE TABLE tokentrail.prices")}
        for name, type_ in EXPECTED_PRICES_COLUMNS.items():
            assert prices.get(name) == type_, name
        events = {r[0] for r in store.rows("DESCRIBE TABLE tokentrail.budget_events")}
        assert {"timestamp", "budget", "event", "spent_usd", "limit_usd"} <= events
    # reopening applies nothing twice
    with open_store(settings) as store:
        assert store.rows("SELECT count() FROM tokentrail.migrations")[0][0] == len(MIGRATIONS)


def test_spool_ingests_each_batch_once_even_when_replayed(tt_home: Path) -> None:
    settings = resolve()
    payload = encode([_row("a1"), _row("a2", None)])
    path = spool.write(settings.spool_dir, "spans", "batch0001", payload)
    # a crash after insert but before delete leaves the file; a replay copies it again
    replay = settings.spool_dir / path.name.replace(path.name[:20], "9" * 20)
    shutil.copy(path, replay)
    with open_store(settings) as store:
        assert spool.count(settings.spool_dir) == 0
        assert store.rows("SELECT span_id, cost_usd FROM tokentrail.spans ORDER BY span_id") == [
            ("a1", __import__("decimal").Decimal("0.000000001")),
            ("a2", None),
        ]
    spool.write(settings.spool_dir, "spans", "batch0001", payload)  # same batch, later
    with open_store(settings) as store:
        assert store.rows("SELECT count() FROM tokentrail.spans")[0][0] == 2


def test_half_written_spool_file_is_not_read(tt_home: Path) -> None:
    settings = resolve()
    settings.spool_dir.mkdir(parents=True)
    (settings.spool_dir / ".00000000000000000001.spans.x.jsonl.123.tmp").write_bytes(b'{"span_id": "par')
    with open_store(settings) as store:
        assert store.rows("SELECT count() FROM tokentrail.spans")[0][0] == 0


WRITER = textwrap.dedent(
    """
    import sys, tokentrail
    from tokentrail import runtime
    rt = tokentrail.configure(home=sys.argv[1], project="proc")
    n, tag = int(sys.argv[2]), sys.argv[3]
    for i in range(n):
        with rt.tracer.start_as_current_span(f"chat m{tag}", attributes={"gen_ai.operation.name": "chat",
                "gen_ai.usage.input_tokens": i, "tokentrail.cost.usd": "0.000001000"}):
            pass
        if i % 50 == 49:
            rt.flush()
    rt.shutdown()
    """
)


def test_writers_and_a_reader_at_the_same_time(tt_home: Path, tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    n = 400
    writers = [
        subprocess.Popen([sys.executable, str(script), str(tt_home), str(n), tag]) for tag in ("a", "b")
    ]
    settings = resolve()
    seen: list[int] = []
    while any(w.poll() is None for w in writers):
        with open_store(settings, lock_timeout=30) as store:  # the reader ingests while they write
            seen.append(store.rows("SELECT count() FROM tokentrail.spans")[0][0])
        time.sleep(0.1)
    assert [w.returncode for w in writers] == [0, 0]
    with open_store(settings) as store:
        rows = store.rows(
            "SELECT name, count(), uniqExact(span_id), sum(input_tokens), sum(cost_usd) FROM tokentrail.spans GROUP BY name ORDER BY name"
        )
    expected_sum = n * (n - 1) // 2
    from decimal import Decimal

    assert rows == [
        ("chat ma", n, n, expected_sum, Decimal("0.000001") * n),
        ("chat mb", n, n, expected_sum, Decimal("0.000001") * n),
    ]
    assert seen == sorted(seen)  # counts only grow: nothing read twice, nothing lost
