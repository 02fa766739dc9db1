"""No silent loss between a callback and the store: bursts, a hung server, a server killed and
restarted, the spool at its cap, an unwritable spool, an unsampled trace. Every test counts
rows and dollars; none times anything."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from chserver import ClickHouseServer, HungServer
from langchain_fakes import UsageChatModel
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

import tokentrail
from tokentrail import runtime
from tokentrail.cli import main as cli_main
from tokentrail.config import resolve
from tokentrail.exporters.processor import LedgerSpanProcessor
from tokentrail.store import open_store, spool

# a model of known cost: 10 input tokens at $1/M + 5 output tokens at $2/M = $0.00002 a call
UNIT_MODEL = "ledger-unit"
PRICES = {UNIT_MODEL: {"input_per_mtok": 1, "output_per_mtok": 2}}
UNIT_COST = Decimal("0.00002")
USAGE = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}


def unit_model() -> UsageChatModel:
    return UsageChatModel(model_name=UNIT_MODEL, response_model=UNIT_MODEL, provider="openai", usage=USAGE, text="ok")


@pytest.fixture
def configured(tt_home: Path, runtimes: list[runtime.Tokentrail]) -> Iterator[Any]:
    made = runtimes

    def make(**settings: Any) -> runtime.Tokentrail:
        rt = runtime.configure(home=tt_home, project="ledger", prices=PRICES, **settings)
        made.append(rt)
        return rt

    yield make


def burst(threads: int, calls_per_thread: int) -> int:
    """`threads` threads calling the unit model through the LangChain handler, flat out."""
    model = unit_model()
    handler = tokentrail.langchain_handler(user_id="burst")
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def work() -> None:
        start.wait()
        try:
            for _ in range(calls_per_thread):
                model.invoke("hi", config={"callbacks": [handler]})
        except BaseException as e:  # the assertion below names it
            errors.append(e)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert errors == []
    assert handler.open_runs == 0
    return threads * calls_per_thread


def ledger(settings: Any) -> tuple[int, int, Decimal | None, int, int]:
    """(model calls, distinct span ids, their cost, input tokens, lost rows) as the store holds them."""
    with open_store(settings) as store:
        [(calls, ids, cost, tokens)] = store.rows(
            "SELECT count(), uniqExact(span_id), sum(cost_usd), sum(input_tokens) FROM tokentrail.spans WHERE operation = 'chat'"
        )
        [(lost,)] = store.rows("SELECT count() FROM tokentrail.lost_spans")
    return calls, ids, cost, tokens, lost


def test_burst_of_20000_calls_from_32_threads_loses_nothing(configured: Any) -> None:
    # a small in-memory queue: the threads outrun the export thread and spill to the spool
    rt = configured(queue_max_spans=64)
    n = burst(32, 625)
    assert rt.flush()
    assert ledger(rt.settings) == (n, n, UNIT_COST * n, 10 * n, 0)
    assert rt.exporter.losses.total.rows == 0
    assert rt.processor.spilled_spans > 0  # the overflow path carried part of the burst


def test_hung_server_for_the_whole_run_then_a_reachable_store(configured: Any, tt_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with HungServer() as hung:
        rt = configured(clickhouse_url=hung.url, insert_deadline_s=0.5, queue_max_spans=512)
        n = burst(8, 750)
        assert rt.flush()
        rt.shutdown()
        assert rt.exporter.inserted_batches == 0
        assert rt.exporter.losses.total.rows == 0
    # the store becomes reachable: here the embedded engine at the same home, fed by `tokentrail ingest`
    monkeypatch.delenv("TOKENTRAIL_CLICKHOUSE_URL", raising=False)
    assert cli_main(["ingest"]) == 0
    assert cli_main(["ingest"]) == 0  # a second drain doubles nothing
    assert ledger(resolve()) == (n, n, UNIT_COST * n, 10 * n, 0)


def test_spans_over_the_queue_go_to_the_spool_from_the_callers_thread(tt_home: Path) -> None:
    """The export thread is stuck: every span past the queue is spilled, none dropped, none twice."""

    class Stuck:
        deadline_s = 1.0

        def __init__(self) -> None:
            self.release = threading.Event()
            self.exported: list[str] = []
            self.spilled: list[str] = []

        def export(self, spans: Any) -> None:
            self.release.wait()
            self.exported += [s.name for s in spans]

        def spill(self, spans: Any) -> None:
            self.spilled += [s.name for s in spans]

        def tick(self) -> None: ...
        def force_flush(self) -> None: ...
        def shutdown(self) -> None: ...

    stuck = Stuck()
    processor = LedgerSpanProcessor(stuck, max_queue=10, max_batch=4, delay_s=60)  # woken only by a full batch
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    names = [f"s{i}" for i in range(100)]
    for name in names[:4]:
        tracer.start_span(name).end()
    while not processor._inflight:  # the export thread took the first batch, and waits
        time.sleep(0.01)
    for name in names[4:]:
        tracer.start_span(name).end()
    assert len(stuck.spilled) == 88  # 96 more spans, at most 10 waiting: 22 batches of 4 spilled
    stuck.release.set()
    assert processor.force_flush()
    assert sorted(stuck.exported + stuck.spilled) == sorted(names)
    provider.shutdown()
    tracer.start_span("after").end()  # after shutdown: still delivered (to the spool)
    assert stuck.spilled[-1] == "after"


def test_a_server_killed_and_restarted_loses_nothing_and_is_drained_by_itself(configured: Any, tmp_path: Path) -> None:
    with ClickHouseServer(tmp_path / "ch-data") as server:
        rt = configured(clickhouse_url=server.url, insert_deadline_s=2.0)
        rt.exporter.retry_interval = 0.5
        model, handler = unit_model(), tokentrail.langchain_handler()
        for _ in range(300):
            model.invoke("hi", config={"callbacks": [handler]})
        assert rt.flush()
        assert rt.exporter.inserted_batches >= 1
        server.kill()
        for _ in range(300):
            model.invoke("hi", config={"callbacks": [handler]})
        assert rt.flush()
        assert spool.count(rt.settings.spool_dir) >= 1  # the server is down: the batch waits
        server.start()
        waited = 0.0
        while spool.count(rt.settings.spool_dir) and waited < 120:  # the exporter drains it by itself
            time.sleep(0.2)
            waited += 0.2
        assert spool.count(rt.settings.spool_dir) == 0
        assert rt.exporter.losses.total.rows == 0
        assert ledger(rt.settings) == (600, 600, UNIT_COST * 600, 6000, 0)


def test_spool_at_its_cap_counts_the_loss_and_records_it(configured: Any, caplog: pytest.LogCaptureFixture) -> None:
    rt = configured(spool_max_bytes=6000)
    model, handler = unit_model(), tokentrail.langchain_handler()
    with caplog.at_level(logging.ERROR, logger="tokentrail.exporter"):
        for _ in range(40):
            model.invoke("hi", config={"callbacks": [handler]})
            assert rt.flush()  # one batch a call: the first few fit, the rest meet the cap
    lost = rt.exporter.losses.total
    assert lost.spans == lost.model_spans > 0 and lost.cost_usd == UNIT_COST * lost.spans
    assert sum("LOST" in r.getMessage() for r in caplog.records) == 1  # logged once a minute at most
    spooled = [f for f in spool.pending(rt.settings.spool_dir) if f.table == "spans"]
    assert len(spooled) + lost.spans == 40  # nothing already spooled was deleted
    rt.shutdown()  # records the hole (through the spool, past the cap)
    with open_store(rt.settings) as store:
        [(stored, stored_cost)] = store.rows("SELECT count(), sum(cost_usd) FROM tokentrail.spans WHERE operation = 'chat'")
        [(lost_spans, lost_model, lost_cost, reason)] = store.rows(
            "SELECT sum(spans), sum(model_spans), sum(cost_usd), any(reason) FROM tokentrail.lost_spans"
        )
    assert stored + lost_spans == 40 and lost_model == lost_spans and reason == "spool_full"
    assert stored_cost + lost_cost == UNIT_COST * 40  # the ledger shows the hole to the nano-dollar


def test_unwritable_spool_counts_the_lost_batch(tmp_path: Path) -> None:
    from tokentrail.exporters import clickhouse as ch_exporter

    blocker = tmp_path / "home"
    blocker.mkdir()
    (blocker / "spool").write_text("a file where the spool directory should be")
    exp = ch_exporter.ClickHouseSpanExporter(resolve(home=blocker))
    rows = [{"operation": "chat", "cost_usd": "0.25"}, {"operation": "chain"}]
    assert exp.write("spans", b"{}\n{}\n", rows=rows) is False
    lost = exp.losses.total
    assert (lost.rows, lost.spans, lost.model_spans, lost.cost_usd) == (2, 2, 1, Decimal("0.25"))
    assert exp.health.path.is_file() and '"spans": 2' in exp.health.path.read_text()
    exp.shutdown()


def test_a_call_inside_an_unsampled_trace_is_still_recorded(configured: Any) -> None:
    rt = configured()
    user_exporter = InMemorySpanExporter()
    user_provider = TracerProvider(sampler=ALWAYS_OFF)  # the application samples nothing
    user_provider.add_span_processor(SimpleSpanProcessor(user_exporter))
    model, handler = unit_model(), tokentrail.langchain_handler()
    with user_provider.get_tracer("app").start_as_current_span("request"):
        model.invoke("hi", config={"callbacks": [handler]})
    seen = model.seen_spans[-1]  # our model span, current inside the call
    assert isinstance(seen, ReadableSpan)  # recorded (not a NonRecordingSpan)...
    assert not seen.get_span_context().trace_flags.sampled  # ...and the user's sampling unchanged
    assert rt.flush()
    assert ledger(rt.settings)[:3] == (1, 1, UNIT_COST)


KILLED_WRITER = """
import sys, threading, time, tokentrail
from tokentrail import runtime
rt = runtime.configure(home=sys.argv[1], project="killed", queue_max_spans=300)
def work():
    while True:
        for _ in range(20):
            with rt.tracer.start_as_current_span("chat m", attributes={"gen_ai.operation.name": "chat",
                    "tokentrail.cost.usd": "0.000001000", "gen_ai.usage.input_tokens": 1}):
                pass
        time.sleep(0.005)  # ~4,000 spans/s a thread: the kill lands in the middle of the traffic
for t in [threading.Thread(target=work, daemon=True) for _ in range(3)]:
    t.start()
while True:
    before = rt.processor.ended_spans  # every span ended before this flush is durable after it
    rt.flush()
    print(before, flush=True)
    time.sleep(0.05)
"""


def test_writers_killed_with_sigkill_lose_nothing_they_flushed(tt_home: Path, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER)
    flushed = 0
    for _ in range(3):
        writer = subprocess.Popen([sys.executable, str(script), str(tt_home)], stdout=subprocess.PIPE, text=True)
        assert writer.stdout is not None
        reports = [int(writer.stdout.readline()) for _ in range(20)]  # 20 flushes, spans made all along
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        flushed += reports[-1]
    with open_store(resolve()) as store:
        [(stored, ids, cost)] = store.rows("SELECT count(), uniqExact(span_id), sum(cost_usd) FROM tokentrail.spans")
    assert stored == ids >= flushed > 0  # a kill may take unflushed spans, never flushed ones, never twice
    assert cost == Decimal("0.000001") * stored
