"""LedgerSpanProcessor: BatchSpanProcessor's job, without dropping a span when it falls behind.

OpenTelemetry's BatchSpanProcessor keeps at most `max_queue_size` spans and drops the rest
("Queue full, dropping Span"). Its one export thread falls behind easily: with 32 threads
making spans it gets a 33rd of the interpreter, and behind a hung server it exports nothing at
all. A dropped span is a dropped cost.

Here, when `max_queue` spans are waiting, the thread that ends the next span writes the oldest
spans to the spool itself: encoding plus one local file write (about 20 µs a span, ~40 ms for
SPILL_BATCH spans), never the network. A thread making spans faster than the exporter takes
them thus pays for its own overflow, memory stays bounded (the queue, the two batches of the
export pipeline, the spans being spilled), and no span is dropped for lack of room. The spool
is the store's own inbox: readers ingest it (embedded store), the exporter drains it into a
server (each batch exactly once).
What the spool cannot take (its size cap, a failing disk) is counted and recorded as lost.

After shutdown, a span that still ends goes to the spool from the caller's thread too.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from .._internal import on_fork_in_child
from ..store.deadline import suppress_instrumentation

logger = logging.getLogger("tokentrail.exporter")

__all__ = ["LedgerSpanProcessor"]

# Spans a batch: each insert into a server with the rollups' views costs ~50-100 ms of the
# server's time whatever its size (a part per table and view), so small batches cap the ingest
# (bench/server_ingest.py, pipelined, load 0.2-2, medians: 79k spans/s at 8,192, 85k at 16,384,
# 106k at 32,768). A batch is at most half the queue: the default queue (32,768) makes 16,384,
# ~50 MB as SDK spans (~3 KB each) and ~100 MB at the peak of their encoding; queue_max_spans =
# 65536 makes 32,768. A caller that overflows the queue spills SPILL_BATCH spans at a time
# (~20 µs a span: ~40 ms of its thread).
MAX_BATCH = 32768
SPILL_BATCH = 2048


class LedgerSpanProcessor(SpanProcessor):
    """Batches finished spans to `exporter` on one thread; spills to the spool when behind.

    `exporter` is a ClickHouseSpanExporter (export, spill, tick, shutdown). Every recorded span
    is kept, sampled or not: a tokentrail span is a ledger entry.
    """

    def __init__(self, exporter: Any, *, max_queue: int = 32768, max_batch: int | None = None, delay_s: float = 1.0) -> None:
        self._exporter = exporter
        self.max_queue = max(1, max_queue)
        # a full batch wakes the export thread while the queue still has room for the spans
        # ended meanwhile: at most half the queue (a batch as big as the queue never woke it)
        most = max(1, self.max_queue // 2)
        self.max_batch = min(MAX_BATCH if max_batch is None else max(1, max_batch), most)
        self.spill_batch = min(self.max_batch, SPILL_BATCH)
        self.delay_s = delay_s
        self._buf: list[ReadableSpan] = []
        self._inflight: set[int] = set()  # batches taken from the buffer and not yet delivered
        self._taken = 0  # batches taken so far (their ids)
        self._shutdown = False
        self._init_sync()
        self.ended_spans = 0  # spans handed to this processor (each delivered, spooled or counted lost)
        self.spilled_spans = 0
        on_fork_in_child(self, LedgerSpanProcessor._after_fork)

    def _after_fork(self) -> None:
        # the parent delivers what it had queued; the child starts empty, with its own thread
        self._buf = []
        self._inflight = set()
        self._init_sync()

    def _init_sync(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the caller's side -----------------------------------------------------------------
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            self.ended_spans += 1
            if self._shutdown:
                overflow = [span]
            else:
                if self._thread is None:
                    self._start_thread()
                buf = self._buf
                buf.append(span)
                n = len(buf)
                if n < self.max_queue:
                    if n == self.max_batch:
                        self._wake.set()
                    return
                overflow = buf[: self.spill_batch]
                del buf[: self.spill_batch]
            batch_id = self._track()
            self.spilled_spans += len(overflow)
        try:
            self._exporter.spill(overflow)
        finally:
            self._done(batch_id)

    def _start_thread(self) -> None:
        t = threading.Thread(target=self._run, name="tokentrail-export", daemon=True)
        self._thread = t
        t.start()

    def _track(self) -> int:
        """A new in-flight batch (called holding the lock)."""
        self._taken += 1
        self._inflight.add(self._taken)
        return self._taken

    def _take(self, most: int) -> tuple[int, list[ReadableSpan]] | None:
        with self._lock:
            if not self._buf or most <= 0:
                return None
            batch = self._buf[: min(self.max_batch, most)]
            del self._buf[: len(batch)]
            return self._track(), batch

    def _done(self, batch_id: int) -> None:
        with self._lock:
            self._inflight.discard(batch_id)
            self._idle.notify_all()

    def _export_waiting(self) -> None:
        """Export the spans waiting now (not those ended meanwhile: a flush under a steady
        stream of spans must end). A pipeline of two: batch N+1 is encoded on this thread while
        batch N is inserted on the exporter's I/O thread; each batch is delivered (stored,
        spooled or counted lost) before this returns."""
        with self._lock:
            left = len(self._buf)
        prepare = getattr(self._exporter, "prepare", None)
        pending: tuple[int, int, Callable[[], object]] | None = None
        try:
            while (taken := self._take(left)) is not None:
                batch_id, batch = taken
                left -= len(batch)
                if prepare is None:  # an exporter without the two steps: one batch at a time
                    self._deliver(batch_id, len(batch), functools.partial(self._exporter.export, batch))
                    continue
                try:
                    prepared = prepare(batch)  # while the previous batch is being inserted
                    if pending is not None:
                        self._deliver(*pending)
                        pending = None
                    pending = (batch_id, len(batch), self._exporter.send(prepared))
                except Exception:  # the export thread must survive any exporter
                    logger.exception("tokentrail: exporter raised (%d spans)", len(batch))
                    self._done(batch_id)
        finally:
            if pending is not None:
                self._deliver(*pending)

    def _deliver(self, batch_id: int, n: int, finish: Callable[[], object]) -> None:
        try:
            finish()  # never raises, counts its own losses
        except Exception:  # the export thread must survive any exporter
            logger.exception("tokentrail: exporter raised (%d spans)", n)
        finally:
            self._done(batch_id)

    # -- the export thread -----------------------------------------------------------------
    def _run(self) -> None:
        suppress_instrumentation()  # the exporter's spool writes and drains: not the app's spans
        while True:
            if len(self._buf) < self.max_batch:  # a full batch waiting: no sleep
                self._wake.wait(self.delay_s)
            self._wake.clear()
            self._export_waiting()
            if self._shutdown:
                return
            self._exporter.tick()

    # -- SpanProcessor ---------------------------------------------------------------------
    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Deliver every span ended so far (to the store, the spool, or counted as lost)."""
        deadline = time.monotonic() + timeout_millis / 1000
        self._export_waiting()
        with self._lock:
            # every span ended before this call is now in a batch taken so far (by this thread,
            # the export thread or a spilling caller): wait for those, not for later ones (under
            # a steady stream of spans a flush must end)
            upto = self._taken
            while any(b <= upto for b in self._inflight):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        self._exporter.force_flush()
        return True

    def shutdown(self) -> None:
        with self._lock:
            if self._shutdown:
                return
            self._shutdown = True
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self._exporter.deadline_s + 5)
        self.force_flush()
        self._exporter.shutdown()
