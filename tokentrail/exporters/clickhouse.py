"""An OpenTelemetry SpanExporter that writes the store's `spans` table (`tokentrail.spans` by default).

Embedded store: every batch goes to the spool (an application never opens the chdb directory).
Server: a batch is inserted directly, as one Native block of columns (columns.py: no dict per
row, no JSON), within a total deadline (`insert_deadline_s`: connect, migrate and insert); past
it, or when the server fails, the batch goes to the spool (JSONEachRow) under the same batch id
and a breaker sends the next batches straight to the spool for `retry_interval`.
The exporter drains the spool into the server by itself once it answers again. A batch that can
be neither inserted nor spooled (the spool at its cap, a disk refusing writes) is counted as
lost with its known cost, and recorded (losses.py): nothing is dropped silently.

The SpanExporter contract holds: export returns FAILURE, never raises; shutdown is idempotent.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from .._internal import on_fork_in_child
from ..config import Settings
from ..errors import one_line
from ..store import (
    connect_server,
    ensure_schema,
    forget_missing_schema,
    ingest_spool,
    problem,
    spool,
)
from ..store.deadline import Deadlines
from ..store.health import ExportHealth
from ..store.ingest import insert_settings, raw_insert, refuses_data
from .columns import COLUMN_NAMES, native_block, span_columns
from .losses import Losses
from .rows import encode, span_row, span_rows

logger = logging.getLogger("tokentrail.exporter")

__all__ = ["ClickHouseSpanExporter", "Prepared", "span_row"]

_LOG_INTERVAL_S = 60.0
DRAIN_BATCH = 200  # spool files per drain step: the export thread comes back to new spans between steps
DRAIN_INTERVAL_S = 5.0


@dataclass
class Prepared:
    """A batch encoded for the server: its spans, its id (the insert's deduplication token, and
    its spool file's name if it goes there), its Native block (None: the JSON way)."""

    spans: Sequence[ReadableSpan]
    batch_id: str
    block: bytes | None = None
    columns_failed: bool = False


def _not_sent() -> bool:
    return False


def _success() -> SpanExportResult:
    return SpanExportResult.SUCCESS


def _failure() -> SpanExportResult:
    return SpanExportResult.FAILURE


class ClickHouseSpanExporter(SpanExporter):
    def __init__(self, settings: Settings, *, retry_interval: float = 30.0) -> None:
        self.settings = settings
        self.retry_interval = retry_interval
        self.deadline_s = settings.insert_deadline_s
        self._client: Any = None
        self._down_until = 0.0
        self._next_drain = 0.0
        self._last_warning = -_LOG_INTERVAL_S
        self._told: set[tuple[str, str]] = set()  # store problems already logged (not transient)
        self._shutdown = False
        self._lock = threading.Lock()
        self._counts_lock = threading.Lock()
        self._io = Deadlines("tokentrail-insert")
        self.health = ExportHealth(
            settings.home,
            service_name=settings.service_name,
            project=settings.project,
            store=settings.public_store,
        )
        self.losses = Losses(settings.spool_dir, self.health, service_name=settings.service_name, project=settings.project)
        self.spooled_batches = 0
        self.inserted_batches = 0
        self.spilled_batches = 0
        # a child forked while the export thread held the lock would wait on it forever
        on_fork_in_child(self, ClickHouseSpanExporter._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._counts_lock = threading.Lock()
        self._client = None  # a connection is not shared with a child
        self.health.after_fork()
        self.losses.after_fork()

    # -- transport (on the deadline thread) -----------------------------------------------
    def _server_client(self) -> Any:
        if self._client is None:
            assert self.settings.clickhouse_url
            # socket timeouts near the deadline, so an abandoned call ends soon after it (the
            # client takes whole seconds)
            timeout = max(1, math.ceil(self.deadline_s))
            client = connect_server(self.settings.clickhouse_url, connect_timeout=min(2, timeout), send_receive_timeout=timeout)
            try:
                ensure_schema(client, self.settings)  # once per process, not on every reconnect
            except BaseException:  # close the half-made client whatever failed, then re-raise
                client.close()
                raise
            self._client = client
        return self._client

    def _insert_now(self, table: str, payload: bytes, batch_id: str) -> None:
        raw_insert(self._server_client(), self.settings)(table, payload, batch_id)

    def _insert(self, table: str, payload: bytes, batch_id: str) -> None:
        self._io.run(lambda: self._insert_now(table, payload, batch_id), self.deadline_s)

    def _server_ok(self) -> None:
        if self._down_until:
            logger.warning("tokentrail: ClickHouse at %s answers again; draining the spool", self.settings.public_store)
            self._down_until = 0.0
            self._next_drain = 0.0
        self.health.ok()

    def _server_failed(self, e: BaseException) -> None:
        self._client = None
        forget_missing_schema(self.settings, e)  # tables dropped: made again on reconnect
        self._down_until = time.monotonic() + self.retry_interval
        found = problem(e, self.settings)
        self.health.error(f"{found.kind}: {found.message}")
        if found.transient:
            # unreachable, timed out, busy: nothing to fix, said at most once a minute
            if time.monotonic() - self._last_warning < _LOG_INTERVAL_S:
                return
            self._last_warning = time.monotonic()
        elif (found.kind, found.message) in self._told:
            return  # a wrong password or a missing right: said once, not on every retry
        else:
            self._told.add((found.kind, found.message))
        logger.warning("tokentrail: %s; batches go to the spool, retry in %.0fs", found.message, self.retry_interval)

    @property
    def server_down(self) -> bool:
        return time.monotonic() < self._down_until

    # -- delivery --------------------------------------------------------------------------
    def write(self, table: str, payload: bytes, *, rows: Sequence[Mapping[str, Any]] | None = None) -> bool:
        """Deliver one encoded batch to the store or the spool. Never raises; False when the
        batch was lost (and counted)."""
        if not payload:
            return True
        batch_id = spool.new_batch_id()
        if self._send(table, lambda: self._insert_now(table, payload, batch_id)):
            return True
        return self._spool(table, payload, batch_id, rows)

    def _send(self, table: str, insert: Callable[[], None]) -> bool:
        """Run one insert into the server unless it is down; True when it went in. Never raises:
        a failure is logged by kind (and opens the breaker when it is the server's)."""
        return self._begin(table, lambda: self._io.submit(insert, self.deadline_s))()

    def _begin(self, table: str, start: Callable[[], Callable[[], object]]) -> Callable[[], bool]:
        """Start one insert (`start` submits it and returns its wait) unless the server is down;
        the returned function waits for it: True when it went in, False when it failed (logged
        by kind, the breaker opened when the server is at fault). Inserts run one at a time:
        the lock is held from here until the wait returns, so call the wait exactly once."""
        if self.settings.embedded or self._shutdown:
            return _not_sent
        self._lock.acquire()
        try:
            if self.server_down:
                self._lock.release()
                return _not_sent
            wait = start()
        except Exception as e:  # the SpanExporter contract: spool, never raise; kind logged
            self._insert_failed(table, e)
            self._lock.release()
            return _not_sent

        def finish() -> bool:
            try:
                wait()
                self.inserted_batches += 1
                self._server_ok()
                return True
            except Exception as e:  # the SpanExporter contract: FAILURE or spool, never raise; kind logged
                self._insert_failed(table, e)
                return False
            finally:
                self._lock.release()

        return finish

    def _insert_failed(self, table: str, e: Exception) -> None:
        if refuses_data(e):  # the server answered: it is up, the batch is at fault
            logger.error("tokentrail: ClickHouse refused a %s batch (%s); it goes to the spool", table, one_line(e))
        else:
            self._server_failed(e)

    def prepare(self, spans: Sequence[ReadableSpan]) -> Prepared:
        """Encode a batch for the server (the CPU part of an export, no I/O): the processor
        encodes the next batch while this one is inserted. Never raises."""
        prepared = Prepared(spans, spool.new_batch_id())
        if self.settings.embedded or self._shutdown or self.server_down or not spans:
            return prepared  # the spool's way: JSONEachRow, made by send
        try:
            prepared.block = native_block(span_columns(spans))
        except Exception as e:  # the JSON way still stores every span; said once a kind
            prepared.columns_failed = True
            if ("columns", type(e).__name__) not in self._told:
                self._told.add(("columns", type(e).__name__))
                logger.warning("tokentrail: columnar encoding failed (%s); sending JSONEachRow", one_line(e))
        return prepared

    def send(self, prepared: Prepared) -> Callable[[], SpanExportResult]:
        """Start delivering a prepared batch; the returned function waits for it and gives the
        export's result (the batch stored, or spooled under its id, or counted as lost). Call
        it exactly once, before the next send from this thread. Never raises."""
        if self._shutdown:
            return _failure
        if not prepared.spans:
            return _success
        block, batch_id = prepared.block, prepared.batch_id
        if block is not None:
            table = f"`{self.settings.database}`.spans"
            options = insert_settings(self.settings, batch_id)

            def insert_now() -> None:
                self._server_client().raw_insert(table, COLUMN_NAMES, insert_block=block, fmt="Native", settings=options)

            inserted = self._begin("spans", lambda: self._io.submit(insert_now, self.deadline_s))

            def finish() -> SpanExportResult:
                if inserted():
                    return SpanExportResult.SUCCESS
                return self._export_json(prepared, try_server=False)

            return finish
        result = self._export_json(prepared, try_server=prepared.columns_failed)
        return lambda: result

    def _export_json(self, prepared: Prepared, *, try_server: bool) -> SpanExportResult:
        """The batch as JSONEachRow: into the server (when its columns could not be made), else
        into the spool under the same batch id (an abandoned insert that landed is stored once:
        the id is its deduplication token, whatever the format)."""
        spans, batch_id = prepared.spans, prepared.batch_id
        try:
            rows = span_rows(spans)
            payload = encode(rows)
        except Exception as e:  # the SpanExporter contract: counted as lost, FAILURE, never raise
            logger.exception("tokentrail: could not encode %d spans", len(spans))
            self.losses.add("spans", len(spans), "encode_failed", one_line(e))
            return SpanExportResult.FAILURE
        if try_server and self._send("spans", lambda: self._insert_now("spans", payload, batch_id)):
            return SpanExportResult.SUCCESS
        return SpanExportResult.SUCCESS if self._spool("spans", payload, batch_id, rows) else SpanExportResult.FAILURE

    def _spool(self, table: str, payload: bytes, batch_id: str, rows: Sequence[Mapping[str, Any]] | None) -> bool:
        """The same batch id in the spool: an abandoned insert that landed is stored once."""
        try:
            spool.write(self.settings.spool_dir, table, batch_id, payload, max_bytes=self.settings.spool_max_bytes)
        except spool.SpoolFull as e:
            self.losses.add(table, rows if rows is not None else payload.count(b"\n"), "spool_full", str(e))
            return False
        except OSError as e:
            logger.error("tokentrail: could not write the spool at %s (%s)", self.settings.spool_dir, e)
            self.losses.add(table, rows if rows is not None else payload.count(b"\n"), "spool_unwritable", one_line(e))
            return False
        with self._counts_lock:
            self.spooled_batches += 1
        self.health.spooled()
        return True

    def spill(self, spans: Sequence[ReadableSpan]) -> bool:
        """Spans the export thread has no room for, written to the spool from the caller's
        thread (local disk only, never the network). Never raises."""
        try:
            rows = span_rows(spans)
            payload = encode(rows)
        except Exception as e:  # only a MemoryError could get here: span_rows never fails a span
            self.losses.add("spans", len(spans), "encode_failed", one_line(e))
            return False
        with self._counts_lock:
            self.spilled_batches += 1
        return self._spool("spans", payload, spool.new_batch_id(), rows)

    def tick(self) -> None:
        """Periodic work on the export thread: record losses, drain the spool into a server
        that answers. Never raises."""
        try:
            self.losses.record()
            if self.settings.embedded or self._shutdown or self.server_down or time.monotonic() < self._next_drain:
                return
            self._next_drain = time.monotonic() + DRAIN_INTERVAL_S
            if spool.depth(self.settings.spool_dir).files:
                self.drain()
        except Exception:  # background thread: logged, retried on the next tick
            logger.exception("tokentrail: spool drain failed; will retry")

    def drain(self, limit: int = DRAIN_BATCH) -> int:
        """Insert up to `limit` spool files into the server (each within the deadline); returns
        how many went in. A failure opens the breaker; a refused file is set aside."""
        with self._lock:
            if self.server_down:
                return 0
            try:
                done = ingest_spool(None, self.settings.spool_dir, self.settings, insert=self._insert, limit=limit)
            except Exception as e:  # counted and logged by kind in _server_failed
                self._server_failed(e)
                return 0
            self._server_ok()
            if done.batches + len(done.set_aside) >= limit:
                self._next_drain = 0.0  # more waiting: the next tick goes on
            return done.batches

    # -- SpanExporter ----------------------------------------------------------------------
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        return self.send(self.prepare(spans))()

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        self.losses.record(force=True)
        self.health.save(force=True)
        self._io.close()
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # idempotent shutdown: a client already closed
                pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self.losses.record(force=True)
        return True

