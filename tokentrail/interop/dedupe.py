"""Counted once: a model call seen by tokentrail's hooks and by a foreign instrumentation.

A foreign model call and one of tokentrail's own are the same call when they ran in the same
thread, overlapped in time and report the same token counts. `Calls` remembers the calls
recorded lately (in the order they ended) and tokentrail's model calls still open; a foreign
call that ends while one of tokentrail's in its thread is open waits (`hold`) until that one
ends: then it is either the same call (dropped, counted in `duplicates`) or another one
(written). `OwnSpanWatcher`, on tokentrail's own provider, feeds it tokentrail's calls.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from .. import semconv as sc
from ..instrumentation.spans import RunSpan

__all__ = ["MODEL_OPS", "Call", "Calls", "OwnSpanWatcher", "own_model_span", "tokens"]

MODEL_OPS = frozenset({sc.OP_CHAT, sc.OP_TEXT_COMPLETION, sc.OP_EMBEDDINGS})


class Call(NamedTuple):
    """A model call: when (monotonic ns), in which thread, and its token counts."""

    started: int
    ended: int
    thread: int
    tokens: tuple[int, int]


def tokens(attrs: Mapping[str, Any]) -> tuple[int, int]:
    i, o = attrs.get(sc.GEN_AI_USAGE_INPUT_TOKENS, 0), attrs.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS, 0)
    return (i if type(i) is int else -1, o if type(o) is int else -1)


def same(a: Call, b: Call) -> bool:
    """One call seen twice: same thread, overlapping in time, the same token counts."""
    return a.thread == b.thread and a.tokens == b.tokens and a.started <= b.ended and b.started <= a.ended


def own_model_span(span: Any) -> bool:
    if type(span) is not RunSpan:
        return False
    attrs: Any = span._attributes
    return attrs.get(sc.GEN_AI_OPERATION_NAME) in MODEL_OPS


class _Held:
    """A foreign call that ended while a tokentrail model call in its thread was still open."""

    __slots__ = ("blockers", "call", "done")

    def __init__(self, call: Call, blockers: set[int], done: Callable[[bool], None]) -> None:
        self.call, self.blockers, self.done = call, blockers, done


class Calls:
    """The bookkeeping, under one lock. `done(write)` callbacks run outside it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.own_open: dict[int, tuple[int, int]] = {}  # tokentrail model calls open: span id -> (started, thread)
        self._recent: deque[Call] = deque(maxlen=256)  # calls recorded lately, own and foreign, in end order
        self._held: list[_Held] = []
        self.duplicates = 0

    def _seen(self, call: Call) -> bool:
        """Only calls that ended after this one started can overlap it (called holding the lock)."""
        for seen in reversed(self._recent):
            if seen.ended < call.started:
                return False
            if same(call, seen):
                return True
        return False

    def admit(self, call: Call, done: Callable[[bool], None]) -> bool | None:
        """True: write the call now; False: a duplicate (counted); None: held, `done(write)`
        is called when tokentrail's open calls in its thread end (or at a flush)."""
        with self.lock:
            if self._seen(call):
                self.duplicates += 1
                return False
            if self.own_open:
                blockers = {sid for sid, (started, thread) in self.own_open.items() if thread == call.thread and started <= call.ended}
                if blockers:
                    self._held.append(_Held(call, blockers, done))
                    return None
            self._recent.append(call)
        return True

    def skipped(self) -> None:
        with self.lock:
            self.duplicates += 1

    def own_started(self, span_id: int) -> None:
        with self.lock:
            self.own_open[span_id] = (time.monotonic_ns(), threading.get_ident())

    def own_ended(self, span: ReadableSpan) -> None:
        ctx = span.get_span_context()
        if ctx is None:
            return
        ready: list[tuple[_Held, bool]] = []
        with self.lock:
            opened = self.own_open.pop(ctx.span_id, None)
            if opened is None:
                return
            own = Call(opened[0], time.monotonic_ns(), opened[1], tokens(span.attributes or {}))
            self._recent.append(own)
            keep: list[_Held] = []
            for h in self._held:
                if ctx.span_id not in h.blockers:
                    keep.append(h)
                elif same(h.call, own):
                    self.duplicates += 1
                    ready.append((h, False))
                else:
                    h.blockers.discard(ctx.span_id)
                    if h.blockers:
                        keep.append(h)
                    else:
                        self._recent.append(h.call._replace(ended=own.ended))  # keeps _recent in end order
                        ready.append((h, True))
            self._held = keep
        for h, write in ready:
            h.done(write)

    def release_held(self) -> None:
        """Write what is held (a flush, a shutdown): a call is never lost to the wait."""
        with self.lock:
            held, self._held = self._held, []
        for h in held:
            h.done(True)


class OwnSpanWatcher(SpanProcessor):
    """On tokentrail's provider: tells `Calls` of tokentrail's model calls, and marks a foreign
    span that has one inside it (`covered(parent span id)`)."""

    def __init__(self, calls: Calls, covered: Callable[[int], None], flush: Callable[[], None]) -> None:
        self._calls, self._covered, self._flush = calls, covered, flush

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if own_model_span(span):
            self._calls.own_started(span.get_span_context().span_id)
            if span.parent is not None:
                self._covered(span.parent.span_id)

    def on_end(self, span: ReadableSpan) -> None:
        if span.attributes and span.attributes.get(sc.GEN_AI_OPERATION_NAME) in MODEL_OPS:
            self._calls.own_ended(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self._flush()
        return True
