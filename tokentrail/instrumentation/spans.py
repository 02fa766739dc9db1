"""The spans the integrations record: OpenTelemetry spans made without the SDK's per-span work.

`Tracer.start_span` costs more than everything else tokentrail does for a chain step: a sampler
decision, a lock, attribute validation, bounded containers, self-metrics, and a copy of the
span at its end. The integrations know their attributes are clean (strings, numbers, booleans,
tuples of strings) and must record every span (a cost-bearing span is never sampled out), so
`start()` builds a `RunSpan` directly: an `opentelemetry.trace.Span` (it can be the current
span, others can nest under it and set attributes on it) that is also the SDK's
`ReadableSpan`, handed as it is to the same span processors the SDK would call (`on_start`,
`on_end`): the BatchSpanProcessor, exporters and tests see what an SDK span gives them.

What is kept from the SDK: trace and span ids from the provider's id generator, the parent's
trace id, flags and trace state, the provider's resource, the "tokentrail" instrumentation
scope, exception events as `Span.record_exception` writes them, the status rules of
`Span.set_status`. Attributes and events set through the public `Span` methods (by someone
else's code holding the current span) are validated as the SDK does; the integrations' own go
in as they are (`set_trusted`).

A span under a parent the user's sampler dropped is recorded all the same: its context keeps
the parent's flags (the user's own spans below it are sampled as they would be), and the
processors get it marked sampled.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from ..version import VERSION
from .otel_context import get_current as _get_current
from .seams import Recorder

__all__ = ["RunSpan", "set_trusted", "start"]

logger = logging.getLogger("tokentrail")

_UNSET = Status(StatusCode.UNSET)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
# the key trace.set_span_in_context stores the current span under (read, not private API)
SPAN_KEY = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, Context())))


class _Sink:
    """Where a runtime's spans go: its provider's span processor, resource, ids and scope."""

    __slots__ = ("ids", "on_end", "on_ending", "on_start", "random_ids", "resource", "scope")

    def __init__(self, rt: Recorder) -> None:
        tracer = rt.tracer
        processor = tracer.span_processor
        self.on_start = processor.on_start
        self.on_end = processor.on_end
        self.on_ending = getattr(processor, "_on_ending", None)
        self.resource = tracer.resource
        self.ids = tracer.id_generator
        self.random_ids = bool(getattr(self.ids, "is_trace_id_random", lambda: False)())
        self.scope = InstrumentationScope("tokentrail", VERSION)


_last: tuple[Recorder, _Sink] | None = None


def _sink(rt: Recorder) -> _Sink:
    global _last
    last = _last
    if last is not None and last[0] is rt:
        return last[1]
    sink = _Sink(rt)
    _last = (rt, sink)
    return sink


def _clean(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """Attributes as the SDK keeps them (invalid keys and values dropped with its warning)."""
    return dict(BoundedAttributes(attributes=attributes)) if attributes else {}


class RunSpan(trace.Span, ReadableSpan):
    """A recording span of one framework run (see the module docstring)."""

    def __init__(
        self,
        sink: _Sink,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: dict[str, Any],
        start_time: int,
    ) -> None:
        # the fields ReadableSpan.__init__ sets, set directly (this runs for every span)
        self._name = name
        self._context = context
        self._kind = kind
        self._instrumentation_info = None
        self._instrumentation_scope = sink.scope
        self._parent = parent
        self._start_time = start_time
        self._end_time: int | None = None
        self._attributes = attributes
        self._events: list[Event] = []
        self._links: list[Link] = []
        self._resource = sink.resource
        self._status = _UNSET
        self._sink = sink
        self._sampled = bool(context[3] & TraceFlags.SAMPLED)

    # -- what the integrations call ----------------------------------------------------------
    def set_trusted(self, attributes: Mapping[str, Any]) -> None:
        """Set attributes known to be valid OTel values (no validation)."""
        if self._end_time is None:
            self._attributes.update(attributes)  # type: ignore[union-attr]

    # -- opentelemetry.trace.Span ------------------------------------------------------------
    def get_span_context(self) -> SpanContext:
        return self._context  # type: ignore[return-value]

    def is_recording(self) -> bool:
        return self._end_time is None

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if self._end_time is None:
            self._attributes.update(_clean(attributes))  # type: ignore[union-attr]

    def set_attribute(self, key: str, value: Any) -> None:
        self.set_attributes({key: value})

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None, timestamp: int | None = None) -> None:
        if self._end_time is None:
            self._events.append(Event(name, BoundedAttributes(attributes=attributes, immutable=True), timestamp))  # type: ignore[attr-defined]

    def add_link(self, context: SpanContext, attributes: Mapping[str, Any] | None = None) -> None:
        if self._end_time is None and context is not None and context.is_valid:
            self._links.append(Link(context, BoundedAttributes(attributes=attributes, immutable=True)))  # type: ignore[attr-defined]

    def update_name(self, name: str) -> None:
        if self._end_time is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        # the SDK's rules: OK is final, UNSET is ignored
        if self._end_time is not None or self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            if status.status_code is not StatusCode.UNSET:
                self._status = status
        elif status is not StatusCode.UNSET:
            self._status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        # the event Span.record_exception writes
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        attrs: dict[str, Any] = {
            "exception.type": f"{module}.{qualname}" if module and module != "builtins" else qualname,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            attrs.update(attributes)
        self.add_event("exception", attrs, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end_time is not None:
            return
        from time import time_ns

        self._end_time = end_time if end_time is not None else time_ns()
        sink = self._sink
        if sink.on_ending is not None:
            sink.on_ending(self)
        sink.on_end(self if self._sampled else self._sampled_copy())

    def _sampled_copy(self) -> ReadableSpan:
        ctx: SpanContext = self._context  # type: ignore[assignment]
        return ReadableSpan(
            name=self._name,
            context=SpanContext(ctx.trace_id, ctx.span_id, False, TraceFlags(ctx.trace_flags | _SAMPLED), ctx.trace_state),
            parent=self._parent,
            resource=self._resource,
            attributes=self._attributes,
            events=self._events,
            links=self._links,
            kind=self._kind,
            status=self._status,
            start_time=self._start_time,
            end_time=self._end_time,
            instrumentation_scope=self._instrumentation_scope,
        )

    def __repr__(self) -> str:
        return f'RunSpan(name="{self._name}", context={self._context})'


def start(
    rt: Any,
    name: str,
    parent: Context | None,
    kind: SpanKind,
    attributes: dict[str, Any],
    start_time: int,
) -> RunSpan:
    """A recording span as a child of the span current in `parent` (the current context when
    None), or a new trace's root. `attributes` is taken as it is (the caller's own dict)."""
    last = _last
    sink = last[1] if last is not None and last[0] is rt else _sink(rt)
    parent_span: Any = (parent if parent is not None else _get_current()).get(SPAN_KEY)
    parent_ctx = parent_span.get_span_context() if parent_span is not None else None
    if parent_ctx is not None and parent_ctx[5]:  # SpanContext is (trace id, span id, remote, flags, state, valid)
        ctx = SpanContext(parent_ctx[0], sink.ids.generate_span_id(), False, parent_ctx[3], parent_ctx[4])
        span = RunSpan(sink, name, ctx, parent_ctx, kind, attributes, start_time)
    else:
        flags = TraceFlags(_SAMPLED | TraceFlags.RANDOM_TRACE_ID) if sink.random_ids else _SAMPLED
        ctx = SpanContext(sink.ids.generate_trace_id(), sink.ids.generate_span_id(), False, flags)
        span = RunSpan(sink, name, ctx, None, kind, attributes, start_time)
    sink.on_start(span, parent)  # type: ignore[arg-type]  # a RunSpan has what processors read of a Span
    return span


def set_trusted(span: trace.Span, attributes: Mapping[str, Any]) -> None:
    """Set the integration's own attributes on a span (no validation for a RunSpan)."""
    if type(span) is RunSpan:
        span.set_trusted(attributes)
    else:
        span.set_attributes(attributes)
