"""The state of the LlamaIndex spans tokentrail records: one `Span` per emitted span, an
`Alias` for a skipped one (its children and events go to its nearest emitted ancestor), and
`SpanBook`, the part of the span handler that keeps them and ends them."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from opentelemetry import trace
from opentelemetry.context import Context
from pydantic import Field

from ... import _internal
from ... import context as tt_context
from ... import semconv as sc
from ...usage import Usage
from .. import otel_context, seams
from ..lifecycle import ModelCall

__all__ = ["FRAMEWORK", "Alias", "Errors", "Span", "SpanBook", "pending_block"]

FRAMEWORK = "llamaindex"

# A BudgetExceeded raised inside a handler, waiting for the patched Dispatcher.event to raise
# it in the caller (LlamaIndex swallows exceptions from handlers).
pending_block: ContextVar[BaseException | None] = ContextVar("tokentrail_li_block", default=None)


class Span:
    """One emitted span and what is known about its call."""

    __slots__ = (
        "id",
        "otel",
        "ctx",
        "token",
        "rt",
        "kind",
        "operation",
        "instance_id",
        "attribution",
        "current",
        "capture",
        "chain_name",
        "start_ns",
        # model and embedding calls: the shared model-call lifecycle, and what this adapter keeps
        "call",
        "max_tokens",
        "depth",
        "messages",
        "prompt",
        "usage",
        "stream_usage",
        "response_model",
        "last_response",
        "exited",
        "ended",
        "texts",
        "chunks",
        "event_usage",
        "__weakref__",
    )

    # set by TokentrailSpanHandler._new_span right after construction (declarations only:
    # no class attributes, so they do not clash with __slots__)
    id: str
    otel: trace.Span
    ctx: Context
    rt: seams.Recorder
    kind: int
    operation: str
    instance_id: int
    attribution: tt_context.Attribution
    current: tt_context.Attribution
    capture: bool
    chain_name: str
    start_ns: int

    def __init__(self) -> None:
        self.token: object | None = None
        self.call: ModelCall | None = None
        self.max_tokens: int | None = None
        self.depth = 0
        self.messages: Sequence[Any] | None = None
        self.prompt: str | None = None
        self.usage: Usage | None = None
        self.stream_usage: Usage | None = None
        self.response_model: str | None = None
        self.last_response: Any = None
        self.exited = False
        self.ended = False
        self.texts: Any = None
        self.chunks: list[Sequence[str]] | None = None
        self.event_usage: Usage | None = None


class Alias:
    """A skipped LlamaIndex span: its children and events go to `target` (None: to the caller)."""

    __slots__ = ("target", "instance_id")

    def __init__(self, target: Span | None, instance_id: int) -> None:
        self.target = target
        self.instance_id = instance_id


Errors = _internal.ErrorLog  # LlamaIndex swallows what a handler raises: errors are kept for tests


class SpanBook(BaseSpanHandler[Any]):  # type: ignore[type-var]
    """The spans one handler has open or streaming, and how they end. The LlamaIndex hooks are
    in handler.py (spans), models.py (model and embedding calls), generators.py (lazy
    generators), events.py (events)."""

    # Plain fields, not PrivateAttr: pydantic serves private attributes through a Python
    # __getattr__ (~1 µs a read), and these are read on every span. (The base class's `lock`
    # property is such a read, twice per span: span_enter/exit below do without it.)
    streaming: dict[str, Span] = Field(default_factory=dict, exclude=True)
    errors: Errors = Field(default_factory=Errors, exclude=True)
    stream_lock: Any = Field(default_factory=threading.Lock, exclude=True)
    # generator frame id -> (generator, the span that returned it): see _continuation
    gen_frames: dict[int, tuple[Any, Span]] = Field(default_factory=dict, exclude=True)

    # -- lookup ----------------------------------------------------------------------------
    def resolve(self, span_id: str | None) -> Span | None:
        """The emitted span an event or a child belongs to."""
        if not span_id:
            return None
        entry = self.open_spans.get(span_id)
        if entry is None:
            return self.streaming.get(span_id)
        if type(entry) is Alias:
            return entry.target
        return entry  # type: ignore[no-any-return]

    @property
    def streaming_count(self) -> int:
        return len(self.streaming)

    # -- ending ----------------------------------------------------------------------------
    def _release_context(self, s: Span) -> None:
        token, s.token = s.token, None
        if token is not None:
            otel_context.detach(token)

    def _end(self, s: Span) -> None:
        if s.ended:
            return
        s.ended = True
        s.otel.end(end_time=s.rt.now_ns())

    def _end_stream(self, s: Span) -> None:
        with self.stream_lock:
            self.streaming.pop(s.id, None)
        self._end(s)

    def end_all(self) -> int:
        """End every span still open (on uninstrument): none may leak."""
        n = 0
        with self.stream_lock:
            streams = list(self.streaming.values())
            self.streaming.clear()
        for entry in [*self.open_spans.values(), *streams]:
            if type(entry) is Span and not entry.ended:
                with self.errors.guard("end_all"):
                    if entry.call is not None:
                        entry.call.release()
                    entry.otel.set_attribute(sc.INCOMPLETE, True)
                    self._end(entry)
                    n += 1
        with self.lock:
            self.open_spans.clear()
        return n
