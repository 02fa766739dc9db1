"""Ingest speed into a real ClickHouse server: spans per second from one process's exporter,
beside the embedded store's ingest (spool files, then a reader's ingest) in the same run.

    .venv/bin/python bench/server_ingest.py                       # 200,000 spans, a server started here
    .venv/bin/python bench/server_ingest.py --spans 500000 --batch 512 --batch 16384
    .venv/bin/python bench/server_ingest.py --url http://default:@host:8123/bench   # a server of yours

The server is the chdb package's clickhouse-local listening on loopback (tests/chserver.py),
the schema tokentrail's own (spans plus the rollups' materialized views). Spans are made with
the OpenTelemetry SDK (a chain span and a model call with tokentrail's attributes, alternating)
before the clock starts; then, per batch size:

- pipelined: the span processor's flush of the spans waiting (LedgerSpanProcessor), batch N+1
  encoded on its thread while batch N is inserted on the exporter's I/O thread;
- exporter: `ClickHouseSpanExporter.export(batch)`, one batch after the other: the spans as columns, one Native block, insert;
- JSON before: the exporter's way before the columnar insert: a dict per row, JSONEachRow;
- insert only: the Native blocks, made before the clock starts, through `raw_insert`;
- no rollups: the same, into a spans table without the rollups' views (the schema before them);
- embedded: the exporter into the spool, then a reader's ingest into the embedded engine.
Below each line: CPU per span in this process and in the server (when started here): on a
shared machine the load moves spans/s much more than it moves CPU per span.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from row_encoding import MODEL_ATTRS as ROW_ATTRS  # noqa: E402 (bench/, beside this file)

from tokentrail.config import Settings  # noqa: E402
from tokentrail.exporters.clickhouse import ClickHouseSpanExporter  # noqa: E402
from tokentrail.exporters.columns import COLUMN_NAMES, native_block, span_columns  # noqa: E402
from tokentrail.exporters.processor import LedgerSpanProcessor  # noqa: E402
from tokentrail.exporters.rows import encode_spans  # noqa: E402
from tokentrail.store import connect_server, forget_schemas, insert_settings, open_store, spool  # noqa: E402
from tokentrail.store.migrations import sql_file  # noqa: E402

# a model call's attributes as the instrumentation sets them (the row encoding bench's), with
# cache reads, team and feature
MODEL_ATTRS: dict[str, Any] = {
    **ROW_ATTRS,
    "gen_ai.usage.cache_read.input_tokens": 512,
    "tokentrail.team": "search",
    "tokentrail.feature": "qa",
}


def make_spans(n: int) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")
    for i in range(n // 2):
        with tracer.start_as_current_span("invoke_workflow rag", attributes={"gen_ai.operation.name": "invoke_workflow"}):
            with tracer.start_as_current_span(
                "chat gpt-4o", attributes={**MODEL_ATTRS, "gen_ai.usage.input_tokens": 1000 + i % 5000, "user.id": f"user-{i % 997}"}
            ):
                pass
    return list(exporter.get_finished_spans())


def batches(spans: list[ReadableSpan], size: int) -> list[list[ReadableSpan]]:
    return [spans[i : i + size] for i in range(0, len(spans), size)]


def rate(n: int, fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t)


def _cpu_s(pid: int | None) -> float:
    """CPU seconds a process has used (all its threads), from /proc; 0 when unknown."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(spans: list[ReadableSpan], size: int, url: str, tmp: Path, server_pid: int | None) -> None:
    """One line of the table: every way in, at one batch size."""
    parts = batches(spans, size)
    settings = Settings(clickhouse_url=url, home=tmp / f"home-{size}")
    db = settings.database
    exp = ClickHouseSpanExporter(settings)
    exp.export(parts[0][:10])  # connect and migrate outside the clock
    client = exp._server_client()
    client.command(f"TRUNCATE TABLE {db}.spans")
    cpu0, srv0 = time.process_time(), _cpu_s(server_pid)
    exporter = rate(len(spans), lambda: [exp.export(b) for b in parts])
    cpu = (time.process_time() - cpu0) / len(spans) * 1e6
    srv = (_cpu_s(server_pid) - srv0) / len(spans) * 1e6
    assert exp.spooled_batches == 0, "the server refused batches"
    n = int(client.query(f"SELECT count() FROM {db}.spans").result_rows[0][0])
    assert n == len(spans), f"{n} rows stored of {len(spans)}"
    # the processor's pipeline: batch N+1 encoded while batch N is inserted
    client.command(f"TRUNCATE TABLE {db}.spans")
    processor = LedgerSpanProcessor(exp, max_queue=len(spans) + 1, max_batch=size)
    processor._buf = list(spans)  # the spans already waiting: what a flush exports
    cpu0, srv0 = time.process_time(), _cpu_s(server_pid)
    piped = rate(len(spans), processor.force_flush)
    piped_cpu = (time.process_time() - cpu0) / len(spans) * 1e6
    piped_srv = (_cpu_s(server_pid) - srv0) / len(spans) * 1e6
    assert exp.spooled_batches == 0, "the server refused batches"
    n = int(client.query(f"SELECT count() FROM {db}.spans").result_rows[0][0])
    assert n == len(spans), f"{n} rows stored of {len(spans)}"

    def json_exporter() -> None:  # the exporter's way before: rows as dicts, JSONEachRow
        for i, b in enumerate(parts):
            client.raw_insert(f"{db}.spans", None, insert_block=encode_spans(b), fmt="JSONEachRow", settings=insert_settings(settings, f"json-{size}-{i}"))

    client.command(f"TRUNCATE TABLE {db}.spans")
    cpu0, srv0 = time.process_time(), _cpu_s(server_pid)
    json_rate = rate(len(spans), json_exporter)
    json_cpu = (time.process_time() - cpu0) / len(spans) * 1e6
    json_srv = (_cpu_s(server_pid) - srv0) / len(spans) * 1e6
    blocks = [native_block(span_columns(b)) for b in parts]

    def insert_only(table: str, tag: str) -> Callable[[], None]:
        def run() -> None:
            for i, block in enumerate(blocks):
                client.raw_insert(table, COLUMN_NAMES, insert_block=block, fmt="Native", settings=insert_settings(settings, f"{tag}-{size}-{i}"))

        return run

    raw = rate(len(spans), insert_only(f"{db}.spans", "raw"))
    # the same, into a spans table without the rollups' views (tokentrail 0.1.0's schema)
    plain = f"{db}_plain"
    client.command(f"CREATE DATABASE IF NOT EXISTS {plain}")
    client.command(f"DROP TABLE IF EXISTS {plain}.spans SYNC")
    client.command(sql_file("001_spans.sql", table=f"{plain}.spans"))
    client.command(sql_file("005_spans_prices.sql", table=f"{plain}.spans"))
    floor = rate(len(spans), insert_only(f"{plain}.spans", "plain"))
    exp.shutdown()
    emb_settings = Settings(home=tmp / f"embedded-{size}")
    emb = ClickHouseSpanExporter(emb_settings)
    forget_schemas()
    with open_store(emb_settings):
        pass  # the store exists and is migrated before the clock starts
    t = time.perf_counter()
    for b in parts:
        emb.export(b)
    spooled = time.perf_counter() - t
    t = time.perf_counter()
    with open_store(emb_settings) as store:
        n = int(store.rows("SELECT count() FROM tokentrail.spans")[0][0])
    ingested = time.perf_counter() - t
    assert n == len(spans) and spool.count(emb_settings.spool_dir) == 0
    embedded = len(spans) / (spooled + ingested)
    print(f"{size:>7,}  {piped:>12,.0f}  {exporter:>12,.0f}  {json_rate:>12,.0f}  {raw:>12,.0f}  {floor:>12,.0f}  {embedded:>12,.0f}")
    print(f"{'':>7}  CPU µs per span, here + in the server: pipelined {piped_cpu:.1f} + {piped_srv:.1f}, exporter {cpu:.1f} + {srv:.1f}, JSON before {json_cpu:.1f} + {json_srv:.1f}")
    print(f"{'':>7}  embedded: spool {len(spans) / spooled:,.0f}/s, then ingest {len(spans) / ingested:,.0f}/s")


def through_processor(spans: list[ReadableSpan], url: str, tmp: Path, queue: int, batch: int | None) -> None:
    """What an application gets: every span ended (on_end) on this thread while the processor's
    export thread delivers, then a flush. Spans the export thread had no room for are spilled
    to the spool by this thread (counted), none dropped."""
    settings = Settings(clickhouse_url=url, home=tmp / f"proc-{queue}-{batch}")
    exp = ClickHouseSpanExporter(settings)
    exp.export(spans[:10])  # connect and migrate outside the clock
    client = exp._server_client()
    client.command(f"TRUNCATE TABLE {settings.database}.spans")
    processor = LedgerSpanProcessor(exp, max_queue=queue, max_batch=batch)
    t = time.perf_counter()
    for s in spans:
        processor.on_end(s)
    ended = time.perf_counter() - t
    processor.force_flush()
    total = time.perf_counter() - t
    processor.shutdown()  # its thread stopped: no drain moves a spool file meanwhile
    client = connect_server(url)
    stored = int(client.query(f"SELECT count() FROM {settings.database}.spans").result_rows[0][0])
    waiting = sum(f.path.read_bytes().count(b"\n") for f in spool.pending(settings.spool_dir))
    client.close()
    assert stored + waiting == len(spans), (stored, waiting)
    print(
        f"queue {queue:>6,}, batch {processor.max_batch:>6,}: {len(spans) / total:>9,.0f} spans/s delivered,"
        f" {len(spans) - processor.spilled_spans:,} by the export thread, {processor.spilled_spans:,} spilled"
        f" to the spool by the caller ({waiting:,} still there); on_end {ended / len(spans) * 1e6:.1f} µs a span"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spans", type=int, default=200_000)
    ap.add_argument("--batch", type=int, action="append", help="batch size (repeatable; default 8192 and 16384)")
    ap.add_argument("--url", help="a ClickHouse server URL (default: one started here on loopback)")
    args = ap.parse_args()
    sizes = args.batch or [8192, 16384]
    tmp = Path(tempfile.mkdtemp(prefix="tokentrail-ingest-"))
    server = None
    try:
        if args.url:
            url = args.url
        else:
            from chserver import ClickHouseServer

            server = ClickHouseServer(tmp / "server" / "data").start()
            url = server.url_for("bench_ingest")
        t = time.perf_counter()
        spans = make_spans(args.spans)
        print(f"{len(spans):,} spans made in {time.perf_counter() - t:.1f} s (not timed below); server {url.rsplit('@', 1)[-1]}")
        print(f"\n{'batch':>7}  {'pipelined':>12}  {'exporter':>12}  {'JSON before':>12}  {'insert only':>12}  {'no rollups':>12}  {'embedded':>12}   spans/s")
        pid = server.proc.pid if server is not None and server.proc is not None else None
        for size in sizes:
            measure(spans, size, url, tmp, pid)
        print("\nthe processor, spans ended one by one on this thread (an application's way):")
        through_processor(spans, url, tmp, 16384, 8192)  # the defaults before
        through_processor(spans, url, tmp, 32768, None)  # the defaults now
        through_processor(spans, url, tmp, 65536, None)  # queue_max_spans = 65536: batches of 32,768
        print("\npipelined = the span processor's flush: encode batch N+1 while batch N is inserted")
        print("exporter = encode + insert into the server, one batch after the other; target >= 100,000 spans/s")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
