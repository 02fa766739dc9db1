"""The exporter: SpanExporter contract, and a server that cannot be reached never costs a span."""

from __future__ import annotations

import functools
import socket
import time
from decimal import Decimal
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export import SpanExportResult

import tokentrail
from tokentrail import runtime, testing
from tokentrail.cli import main as cli_main
from tokentrail.config import resolve
from tokentrail.exporters import clickhouse as ch_exporter
from tokentrail.store import open_store, spool


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _make_spans(rt: runtime.Tokentrail, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        with rt.tracer.start_as_current_span("invoke_workflow demo"):
            with rt.tracer.start_as_current_span(
                "chat gpt-4o",
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.input_tokens": 100 + i,
                    "tokentrail.cost.usd": "0.000250000",
                },
            ):
                pass
    return time.perf_counter() - t0


def test_refused_server_spools_everything_and_ingest_replays_once(tt_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://default:@127.0.0.1:{_free_port()}/tokentrail"
    rt = tokentrail.configure(home=tt_home, clickhouse_url=url, project="p")
    try:
        _make_spans(rt, 150)
        assert rt.flush()
        assert rt.exporter.inserted_batches == 0
        assert rt.exporter.spooled_batches >= 1
        assert spool.count(rt.settings.spool_dir) == rt.exporter.spooled_batches
    finally:
        rt.shutdown()
        testing.reset()
    # the server "comes back": here, the embedded engine at the same home, fed by `tokentrail ingest`
    monkeypatch.delenv("TOKENTRAIL_CLICKHOUSE_URL", raising=False)
    assert cli_main(["ingest"]) == 0
    assert cli_main(["ingest"]) == 0  # a second drain finds nothing and doubles nothing
    with open_store(resolve()) as store:
        rows = store.rows(
            "SELECT count(), uniqExact(span_id), countIf(parent_span_id = ''), sum(input_tokens), sum(cost_usd) "
            "FROM tokentrail.spans"
        )
    assert rows == [(300, 300, 150, sum(100 + i for i in range(150)), Decimal("0.00025") * 150)]


def test_hanging_server_never_makes_the_application_wait(tt_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a socket that accepts connections and never answers: inserts hang until their timeout
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    port = server.getsockname()[1]
    monkeypatch.setattr(
        ch_exporter, "connect_server", functools.partial(ch_exporter.connect_server, connect_timeout=1, send_receive_timeout=2)
    )
    rt = tokentrail.configure(home=tt_home, clickhouse_url=f"http://127.0.0.1:{port}", project="p")
    try:
        # the export thread is stuck on the server for seconds; the application is not
        first = _make_spans(rt, 20)
        time.sleep(0.2)
        later = _make_spans(rt, 500)
        assert later < 2.0, f"500 spans took {later:.2f}s while the server hung"
        assert first < 2.0
        assert rt.flush(timeout_millis=20000)
        assert spool.count(rt.settings.spool_dir) >= 1
    finally:
        rt.shutdown()
        testing.reset()
        server.close()


def test_exporter_contract(tt_home: Path) -> None:
    exp = ch_exporter.ClickHouseSpanExporter(resolve())
    assert exp.export([]) is SpanExportResult.SUCCESS
    exp.shutdown()
    exp.shutdown()  # idempotent
    assert exp.export([]) is SpanExportResult.FAILURE  # after shutdown: refuse, never raise
    assert exp.force_flush() is True


def test_unwritable_spool_returns_failure_not_an_exception(tmp_path: Path) -> None:
    blocker = tmp_path / "home"
    blocker.mkdir()
    (blocker / "spool").write_text("a file where the spool directory should be")
    exp = ch_exporter.ClickHouseSpanExporter(resolve(home=blocker))
    assert exp.write("spans", b'{"span_id":"x"}\n') is False
