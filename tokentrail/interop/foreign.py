"""A SpanProcessor that prices other instrumentations' GenAI spans into tokentrail's ledger.

    provider.add_span_processor(tokentrail.span_processor())   # the user's own TracerProvider
    tokentrail.instrument_otel()                                # or: the global one

For each model-call span that OpenInference, OpenLLMetry or OpenTelemetry's genai
instrumentations end, one row goes to `tokentrail.spans` through tokentrail's own ledger
processor (the same encoder, spool and store as tokentrail's hooks): usage normalised
(normalise.py), priced at the span's start time by the PriceBook, attributed from
`tokentrail.attributes()` (as current where the span started) and the span's own user and
session. Chains, tools and agents of other instrumentations are not copied: the ledger is
about model calls.

Counted once: a model call seen twice in one process is priced where it is seen outermost.
A model-call span whose parent is itself a model call (OpenLLMetry's LangChain span above the
openai-v2 client span, or tokentrail's own span above either) is not priced again; a foreign
model-call span with a tokentrail model-call span inside it leaves the pricing to tokentrail's
hooks (they see the provider's own usage). Such skips are counted (`duplicates`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, NamedTuple

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from .. import context as attribution_ctx
from .. import semconv as sc
from .._internal import internal_errors
from ..usage import usage_attributes
from . import normalise as nz

logger = logging.getLogger("tokentrail")

__all__ = ["ForeignSpanProcessor", "OwnSpanWatcher"]

_MODEL_OPS = frozenset({sc.OP_CHAT, sc.OP_TEXT_COMPLETION, sc.OP_EMBEDDINGS})
_MAX_OPEN = 100_000  # spans started and not ended kept track of: a leak stops growing here


class _Open:
    __slots__ = ("attribution", "covered", "parent", "started", "thread")

    def __init__(self, attribution: Any, parent: Any) -> None:
        self.attribution = attribution
        self.parent = parent  # the parent span object, when it is in this process
        self.covered = False  # a tokentrail model-call span started inside it
        self.thread = threading.get_ident()
        self.started = time.monotonic_ns()  # not the span's time: tokentrail's clock may be injected


class _Call(NamedTuple):
    """A model call already in the ledger: when (monotonic), where, and its token counts."""

    started: int
    ended: int
    thread: int
    tokens: tuple[int, int]


class _Pending:
    """A foreign call that ended while a tokentrail model call in its thread was still open:
    held until that one ends (the same call, seen twice, or another one)."""

    __slots__ = ("blockers", "call", "span")

    def __init__(self, span: ReadableSpan, call: _Call, blockers: set[int]) -> None:
        self.span, self.call, self.blockers = span, call, blockers


def _tokens(attrs: Mapping[str, Any]) -> tuple[int, int]:
    i, o = attrs.get(sc.GEN_AI_USAGE_INPUT_TOKENS, 0), attrs.get(sc.GEN_AI_USAGE_OUTPUT_TOKENS, 0)
    return (i if type(i) is int else -1, o if type(o) is int else -1)


def _same(a: _Call, b: _Call) -> bool:
    """One call seen twice: same thread, overlapping in time, the same token counts."""
    return a.thread == b.thread and a.tokens == b.tokens and a.started <= b.ended and b.started <= a.ended


def _own_model_span(span: Any) -> bool:
    from ..instrumentation.spans import RunSpan

    if type(span) is not RunSpan:
        return False
    attrs: Any = span._attributes
    return attrs.get(sc.GEN_AI_OPERATION_NAME) in _MODEL_OPS


def _is_ours(span: Any) -> bool:
    scope = span.instrumentation_scope
    return scope is not None and scope.name == "tokentrail"


class ForeignSpanProcessor(SpanProcessor):
    """See the module docstring. `runtime`: a Tokentrail, or None for the default instance
    (looked up when a span ends, so a later configure() is followed)."""

    def __init__(self, runtime: Any = None) -> None:
        self._runtime = runtime
        self._open: dict[int, _Open] = {}
        self._lock = threading.Lock()
        self.recorded = 0  # rows written
        self.duplicates = 0  # model calls left to an outer span or to tokentrail's hooks
        self._watched: set[int] = set()
        self._own_open: dict[int, tuple[int, int]] = {}  # tokentrail model calls open: (started, thread)
        self._recent: deque[_Call] = deque(maxlen=256)  # calls recorded lately, own and foreign
        self._pending: list[_Pending] = []

    def _rt(self) -> Any:
        if self._runtime is not None:
            return self._runtime
        from .. import runtime

        return runtime.get()

    def watch(self, rt: Any) -> None:
        """Hook tokentrail's own provider, to see its model calls made inside a foreign one."""
        if id(rt) not in self._watched:
            self._watched.add(id(rt))
            rt.provider.add_span_processor(OwnSpanWatcher(self))

    # -- SpanProcessor -----------------------------------------------------------------------
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        ctx = span.get_span_context()
        if ctx is None or _is_ours(span):
            return
        rt = self._runtime
        if rt is None:
            from .. import runtime

            rt = runtime.current_or_none()
        if rt is not None and id(rt) not in self._watched:
            self.watch(rt)
        parent: Any = trace.get_current_span(parent_context)
        entry = _Open(attribution_ctx.current(), parent if parent.is_recording() else None)
        with self._lock:
            if len(self._open) < _MAX_OPEN:
                self._open[ctx.span_id] = entry

    def on_end(self, span: ReadableSpan) -> None:
        ctx = span.get_span_context()
        with self._lock:
            entry = self._open.pop(ctx.span_id, None) if ctx is not None else None
        with internal_errors("pricing a foreign GenAI span"):
            self._record(span, entry)

    def shutdown(self) -> None:
        self.release_pending()
        with self._lock:
            self._open.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self.release_pending()
        return True

    # -- the work ----------------------------------------------------------------------------
    def covered(self, span_id: int) -> None:
        entry = self._open.get(span_id)
        if entry is not None:
            entry.covered = True

    def _record(self, span: ReadableSpan, entry: _Open | None) -> None:
        if _is_ours(span):  # added to tokentrail's own provider: its spans are in the ledger already
            return
        attrs: Mapping[str, Any] = dict(span.attributes or {})  # one copy: a plain dict reads fast
        fam = nz.family(attrs)
        if fam is None or not nz.is_model_call(attrs):
            return
        if entry is not None and (entry.covered or self._inside_model_call(entry.parent)):
            with self._lock:
                self.duplicates += 1
            return
        rt = self._rt()
        self.watch(rt)
        row_span = self._ledger_span(rt, span, attrs, fam, entry)
        now = time.monotonic_ns()
        call = _Call(entry.started if entry else now, now, entry.thread if entry else threading.get_ident(), _tokens(row_span.attributes or {}))
        with self._lock:
            if self._seen(call):
                self.duplicates += 1
                return
            blockers = {sid for sid, (started, thread) in self._own_open.items() if thread == call.thread and started <= now}
            if blockers:
                self._pending.append(_Pending(row_span, call, blockers))
                return
            self._recent.append(call)
        self._emit(rt, row_span)

    def _seen(self, call: _Call) -> bool:
        """A call recorded lately that is this one. `_recent` is in the order calls ended: only
        those that ended after this one started can overlap it (called holding the lock)."""
        for seen in reversed(self._recent):
            if seen.ended < call.started:
                return False
            if _same(call, seen):
                return True
        return False

    def _emit(self, rt: Any, row_span: ReadableSpan) -> None:
        rt.processor.on_end(row_span)
        with self._lock:
            self.recorded += 1

    def own_started(self, span_id: int) -> None:
        with self._lock:
            self._own_open[span_id] = (time.monotonic_ns(), threading.get_ident())

    def own_ended(self, span: ReadableSpan) -> None:
        ctx = span.get_span_context()
        if ctx is None:
            return
        with self._lock:
            opened = self._own_open.pop(ctx.span_id, None)
            if opened is None:
                return
            own = _Call(opened[0], time.monotonic_ns(), opened[1], _tokens(span.attributes or {}))
            self._recent.append(own)
            ready: list[ReadableSpan] = []
            keep: list[_Pending] = []
            for p in self._pending:
                if ctx.span_id not in p.blockers:
                    keep.append(p)
                elif _same(p.call, own):
                    self.duplicates += 1
                else:
                    p.blockers.discard(ctx.span_id)
                    if p.blockers:
                        keep.append(p)
                    else:
                        self._recent.append(p.call._replace(ended=own.ended))  # keeps _recent in end order
                        ready.append(p.span)
            self._pending = keep
        for row_span in ready:
            self._emit(self._rt(), row_span)

    def release_pending(self) -> None:
        """Write what is held (a flush, a shutdown): a call is never lost to the wait."""
        with self._lock:
            held, self._pending = self._pending, []
        for p in held:
            self._emit(self._rt(), p.span)

    @staticmethod
    def _inside_model_call(parent: Any) -> bool:
        if parent is None:
            return False
        if _own_model_span(parent):
            return True
        pattrs: Any = getattr(parent, "attributes", None) or getattr(parent, "_attributes", None)
        return bool(pattrs) and nz.family(pattrs) is not None and nz.is_model_call(pattrs)

    def _ledger_span(self, rt: Any, span: ReadableSpan, attrs: Mapping[str, Any], fam: str, entry: _Open | None) -> ReadableSpan:
        usage = nz.usage(attrs, fam)
        request_model, response_model = nz.models(attrs)
        provider = nz.provider(attrs)
        when = datetime.fromtimestamp((span.start_time or 0) / 1e9, tz=timezone.utc)
        cost = rt.prices.cost(usage, response_model or request_model, provider, when)
        if cost.status == sc.COST_UNPRICED and request_model and response_model and request_model != response_model:
            cost = rt.prices.cost(usage, request_model, provider, when)  # a dated name may be unknown
        from ..instrumentation.common import cost_attributes

        who = rt.defaults
        if entry is not None and entry.attribution is not attribution_ctx.EMPTY:
            who = who.merged(entry.attribution)
        own = nz.attribution(attrs)
        if own:
            who = who.merged(attribution_ctx.Attribution(user_id=own.get("user_id", ""), session_id=own.get("session_id", "")))
        out: dict[str, Any] = {sc.GEN_AI_OPERATION_NAME: nz.operation(attrs), sc.FRAMEWORK: fam}
        if provider:
            out[sc.GEN_AI_PROVIDER_NAME] = provider
        if request_model:
            out[sc.GEN_AI_REQUEST_MODEL] = request_model
        if response_model:
            out[sc.GEN_AI_RESPONSE_MODEL] = response_model
        out.update(who.span_attributes())
        if usage is not None:
            out.update(usage_attributes(usage))
        out.update(cost_attributes(cost))
        scope = span.instrumentation_scope
        if scope is not None:
            out["tokentrail.source.scope"] = scope.name
        if span.status.status_code is trace.StatusCode.ERROR:
            out[sc.ERROR_TYPE] = str(attrs.get(sc.ERROR_TYPE) or "_OTHER")
        return ReadableSpan(
            name=span.name,
            context=span.get_span_context(),
            parent=span.parent,
            resource=span.resource,
            attributes=out,
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )


class OwnSpanWatcher(SpanProcessor):
    """On tokentrail's provider: marks a foreign span that has a tokentrail model call inside."""

    def __init__(self, foreign: ForeignSpanProcessor) -> None:
        self._foreign = foreign

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if _own_model_span(span):
            ctx = span.get_span_context()
            self._foreign.own_started(ctx.span_id)
            if span.parent is not None:
                self._foreign.covered(span.parent.span_id)

    def on_end(self, span: ReadableSpan) -> None:
        if span.attributes and span.attributes.get(sc.GEN_AI_OPERATION_NAME) in _MODEL_OPS:
            self._foreign.own_ended(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self._foreign.release_pending()
        return True
