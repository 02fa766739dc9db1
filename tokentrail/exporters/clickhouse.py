"""An OpenTelemetry SpanExporter that writes the store's `spans` table (`tokentrail.spans` by default).

Embedded store: every batch goes to the spool (an application never opens the chdb directory).
Server: a batch is inserted directly; when the server cannot be reached it goes to the spool,
and spooled batches are retried later from the exporter thread. The application never waits:
BatchSpanProcessor owns the thread, and a failing server opens a breaker so later batches go
straight to the spool until the retry interval has passed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from ..config import Settings
from ..store import (
    connect_server,
    ensure_schema,
    forget_missing_schema,
    ingest_spool,
    insert_settings,
    spool,
)
from .rows import encode_spans, span_row

logger = logging.getLogger("tokentrail.exporter")

__all__ = ["ClickHouseSpanExporter", "span_row"]

class ClickHouseSpanExporter(SpanExporter):
    def __init__(self, settings: Settings, *, retry_interval: float = 30.0) -> None:
        self.settings = settings
        self.retry_interval = retry_interval
        self._client: Any = None
        self._down_until = 0.0
        self._last_drain = 0.0
        self._shutdown = False
        self._lock = threading.Lock()
        # a child forked while the export thread held the lock would wait on it forever
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)
        self.spooled_batches = 0
        self.inserted_batches = 0

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._client = None  # a connection is not shared with a child

    # -- transport -------------------------------------------------------------------------
    def _server_client(self) -> Any:
        if self._client is None:
            assert self.settings.clickhouse_url
            client = connect_server(self.settings.clickhouse_url)
            try:
                ensure_schema(client, self.settings)  # once per process, not on every reconnect
            except BaseException:
                client.close()
                raise
            self._client = client
        return self._client

    def _insert(self, table: str, payload: bytes, batch_id: str) -> None:
        client = self._server_client()
        # no column list: rows may omit columns left at their default
        client.raw_insert(
            f"{self.settings.database}.{table}",
            None,
            insert_block=payload,
            fmt="JSONEachRow",
            settings=insert_settings(self.settings, batch_id),
        )

    def write(self, table: str, payload: bytes) -> bool:
        """Deliver one encoded batch to the store or the spool. Never raises."""
        if not payload:
            return True
        batch_id = spool.new_batch_id()
        with self._lock:
            if not self.settings.embedded and time.monotonic() >= self._down_until:
                try:
                    self._insert(table, payload, batch_id)
                    self.inserted_batches += 1
                    self._maybe_drain()
                    return True
                except Exception as e:  # unreachable or refused: spool it, retry later
                    self._client = None
                    forget_missing_schema(self.settings, e)  # tables dropped: made again on reconnect
                    self._down_until = time.monotonic() + self.retry_interval
                    logger.warning("tokentrail: ClickHouse unreachable (%s); spooling, retry in %.0fs", e, self.retry_interval)
            try:
                spool.write(self.settings.spool_dir, table, batch_id, payload)
                self.spooled_batches += 1
                return True
            except Exception:
                logger.exception("tokentrail: could not write the spool at %s", self.settings.spool_dir)
                return False

    def _maybe_drain(self) -> None:
        now = time.monotonic()
        if now - self._last_drain < self.retry_interval:
            return
        self._last_drain = now
        try:
            ingest_spool(self._server_client(), self.settings.spool_dir, self.settings)
        except Exception as e:
            logger.warning("tokentrail: spool retry failed (%s); will retry", e)

    # -- SpanExporter ----------------------------------------------------------------------
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        try:
            payload = encode_spans(spans)
        except Exception:
            logger.exception("tokentrail: could not encode %d spans", len(spans))
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS if self.write("spans", payload) else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
