"""The export pipeline: batch N+1 is encoded while batch N is inserted, each batch still stored
exactly once (its id the deduplication token), a failed insert spooled under that id; and the
processor's batch size against its queue."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.exceptions import OperationalError
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tokentrail.config import Settings
from tokentrail.exporters.clickhouse import ClickHouseSpanExporter, Prepared
from tokentrail.exporters.processor import LedgerSpanProcessor
from tokentrail.store import spool


def _spans(n: int) -> list[ReadableSpan]:
    mem = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(mem))
    tracer = provider.get_tracer("t")
    for i in range(n):
        tracer.start_span(f"chat m{i}", attributes={"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": i}).end()
    return list(mem.get_finished_spans())


class _Client:
    """The exporter's real client; each insert first runs `before(k)` (k: its 0-based number)."""

    def __init__(self, client: Any, before: Any) -> None:
        self._client, self._before, self.inserts = client, before, 0

    def raw_insert(self, *a: Any, **kw: Any) -> Any:
        k, self.inserts = self.inserts, self.inserts + 1
        self._before(k)
        return self._client.raw_insert(*a, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _exporter(ch_url: str, tmp_path: Path, before: Any) -> tuple[ClickHouseSpanExporter, list[str]]:
    exp = ClickHouseSpanExporter(Settings(clickhouse_url=ch_url, home=tmp_path / "home", insert_deadline_s=10.0))
    exp.export(_spans(1))  # connect and migrate first
    client = _Client(exp._server_client(), before)
    exp._server_client = lambda: client  # type: ignore[method-assign]
    prepared: list[str] = []
    real = exp.prepare

    def prepare(spans: Any) -> Prepared:
        p = real(spans)
        prepared.append(p.batch_id)
        return p

    exp.prepare = prepare  # type: ignore[method-assign]
    return exp, prepared


def _count(exp: ClickHouseSpanExporter) -> int:
    return int(exp._server_client().query(f"SELECT count() FROM `{exp.settings.database}`.spans").result_rows[0][0])


def test_the_next_batch_is_encoded_while_one_is_inserted(ch_url: str, tmp_path: Path) -> None:
    waited: list[bool] = []
    exp, prepared = None, []  # type: ignore[var-annotated]

    def before(k: int) -> None:
        # batch k is being inserted: the next one gets encoded meanwhile (not after this returns)
        if k < 2:
            deadline = time.monotonic() + 3
            while len(prepared) < k + 2 and time.monotonic() < deadline:
                time.sleep(0.005)
            waited.append(len(prepared) >= k + 2)

    exp, prepared = _exporter(ch_url, tmp_path, before)
    processor = LedgerSpanProcessor(exp, max_queue=100, max_batch=10, delay_s=60)
    processor._buf.extend(_spans(30))  # waiting spans, exported by the flush on this thread
    try:
        assert processor.force_flush()
        assert waited == [True, True]
        assert len(prepared) == 3 and (exp.inserted_batches, exp.spooled_batches) == (4, 0)
        assert _count(exp) == 31
    finally:
        processor.shutdown()


def test_a_failed_insert_in_the_pipeline_is_spooled_under_its_id_and_drained_once(ch_url: str, tmp_path: Path) -> None:
    def before(k: int) -> None:
        if k == 1:
            raise OperationalError("connection reset")  # the server went away mid-run

    exp, prepared = _exporter(ch_url, tmp_path, before)
    processor = LedgerSpanProcessor(exp, max_queue=100, max_batch=10, delay_s=60)
    processor._buf.extend(_spans(30))
    try:
        assert processor.force_flush()
        assert _count(exp) == 1 + 10  # the first batch; the second failed, the third met the breaker
        files = [f for f in spool.pending(exp.settings.spool_dir) if f.table == "spans"]
        assert sorted(f.batch_id for f in files) == sorted(prepared[1:])  # the same ids: one copy each
        assert exp.losses.total.rows == 0
        exp._down_until = 0.0  # the server answers again
        assert exp.drain() == 2
        assert exp.drain() == 0
        assert _count(exp) == 31
        [(ids,)] = exp._server_client().query(f"SELECT uniqExact(span_id) FROM `{exp.settings.database}`.spans").result_rows
        assert ids == 31
    finally:
        processor.shutdown()


class _Recorder:
    deadline_s = 1.0

    def __init__(self) -> None:
        self.exported: list[int] = []
        self.got = threading.Event()

    def export(self, spans: Any) -> None:
        self.exported.append(len(spans))
        self.got.set()

    def spill(self, spans: Any) -> None: ...
    def tick(self) -> None: ...
    def force_flush(self) -> None: ...
    def shutdown(self) -> None: ...


def test_batches_are_at_most_half_the_queue_and_a_full_one_wakes_the_export_thread() -> None:
    assert (LedgerSpanProcessor(_Recorder()).max_queue, LedgerSpanProcessor(_Recorder()).max_batch) == (32768, 16384)
    assert LedgerSpanProcessor(_Recorder(), max_queue=100_000).max_batch == 32768
    rec = _Recorder()
    processor = LedgerSpanProcessor(rec, max_queue=512, delay_s=60)  # woken only by a full batch
    assert (processor.max_batch, processor.spill_batch) == (256, 256)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    for i in range(256):
        tracer.start_span(f"s{i}").end()
    assert rec.got.wait(5)  # a batch as big as the queue never woke the thread: it sat for delay_s
    assert rec.exported == [256] and processor.spilled_spans == 0
    provider.shutdown()
