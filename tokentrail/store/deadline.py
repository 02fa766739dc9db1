"""Calls to a server, each bounded by a total deadline.

clickhouse-connect bounds a socket read, not a request: a server that accepts and never
answers costs connect + read timeout per request, a retried one twice, and opening a client
plus migrating is several requests. Here the call runs on a worker thread and the caller waits
at most `seconds`; a call still running then is abandoned to finish on its own (its socket
timeout ends it). That is safe for inserts: a batch's id is its deduplication token, so an
abandoned insert that lands late and the spooled copy of the same batch are stored once.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from .._internal import on_fork_in_child

T = TypeVar("T")

__all__ = ["DeadlineExceeded", "Deadlines", "suppress_instrumentation"]


def suppress_instrumentation() -> object:
    """Mark this thread's context so that OpenTelemetry instrumentations (urllib3, requests,
    httpx...) record nothing of tokentrail's own I/O, as the SDK's BatchSpanProcessor does for
    its exporter: a traced insert would make spans that make inserts. For a thread's whole life
    (tokentrail's own threads): the token is never detached."""
    from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, attach, set_value

    return attach(set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))


class DeadlineExceeded(TimeoutError):
    """The call did not finish within its deadline (it may still finish later)."""


class Deadlines:
    """One daemon worker thread running calls in order; `run(fn, seconds)` waits at most
    `seconds`. While an abandoned call still runs, new calls fail at once (DeadlineExceeded):
    nothing queues up behind a hung server."""

    def __init__(self, name: str = "tokentrail-io") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] | None = None
        self._busy = threading.Event()
        on_fork_in_child(self, Deadlines._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._queue = None  # the worker thread did not survive the fork
        self._busy = threading.Event()

    def _start(self) -> queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None]:
        with self._lock:
            if self._queue is None:
                q: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
                threading.Thread(target=self._work, args=(q, self._busy), name=self._name, daemon=True).start()
                self._queue = q
            return self._queue

    @staticmethod
    def _work(q: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None], busy: threading.Event) -> None:
        suppress_instrumentation()  # every call to the server runs here
        while True:
            item = q.get()
            if item is None:
                return
            fn, fut = item
            if not fut.set_running_or_notify_cancel():
                continue
            busy.set()
            try:
                result = fn()
            except BaseException as e:  # handed to the waiting caller
                busy.clear()  # before the caller wakes: its next call must not find us busy
                fut.set_exception(e)
            else:
                busy.clear()
                fut.set_result(result)

    def run(self, fn: Callable[[], T], seconds: float) -> T:
        """fn() on the worker thread; its result or its exception, or DeadlineExceeded after
        `seconds`."""
        return self.submit(fn, seconds)()

    def submit(self, fn: Callable[[], T], seconds: float) -> Callable[[], T]:
        """Start fn() on the worker thread and return at once; calling the returned function
        waits for fn's result (or raises its exception, or DeadlineExceeded once `seconds` have
        passed since the submit). The caller works meanwhile: the exporter encodes the next
        batch while this one is inserted. Call it once, before the next submit."""
        if self._busy.is_set():
            raise DeadlineExceeded("an earlier call to the server has not returned yet")
        fut: Future[T] = Future()
        due = time.monotonic() + seconds
        self._start().put((fn, fut))

        def wait() -> T:
            try:
                return fut.result(timeout=max(due - time.monotonic(), 0.001))
            except FutureTimeout:
                fut.cancel()
                raise DeadlineExceeded(f"no answer within {seconds:g} s") from None

        return wait

    def close(self) -> None:
        with self._lock:
            q, self._queue = self._queue, None
        if q is not None:
            q.put(None)
