"""LlamaIndex span and event handlers -> OpenTelemetry spans with usage, cost and budgets.

LlamaIndex's dispatcher calls `new_span` / `prepare_to_exit_span` / `prepare_to_drop_span` around
every decorated method, with the enclosing LlamaIndex span as `parent_span_id`, and sends events
tagged with the active span id (events.py). `_classify` decides which LlamaIndex spans become OTel
spans; the others are aliases of their nearest emitted ancestor, so children and events find
their way. Model and embedding calls are adapters to the shared model-call lifecycle
(models.py, instrumentation/lifecycle.py); other spans are named by tools.py; lazy generators
are followed by generators.py. The OTel context is attached while a span runs, so provider SDK
spans nest under the model span.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from types import AsyncGeneratorType, GeneratorType
from typing import Any

from opentelemetry import context as otel_api
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ... import context as tt_context
from ... import semconv as sc
from .. import common, otel_context, seams, spans
from ..lifecycle import ModelCall
from . import _classify as cl
from . import models, tools
from .events import TokentrailEventHandler
from .generators import GeneratorSpans
from .models import ModelSpans
from .runs import FRAMEWORK, Alias, Errors, Span, pending_block

__all__ = ["FRAMEWORK", "PROPAGATION_KEY", "Errors", "TokentrailEventHandler", "TokentrailSpanHandler", "pending_block"]

PROPAGATION_KEY = "tokentrail"
_propagator = TraceContextTextMapPropagator()


class TokentrailSpanHandler(ModelSpans, GeneratorSpans):
    """Maps LlamaIndex spans to OpenTelemetry spans (see the module docstring)."""

    @classmethod
    def class_name(cls) -> str:
        return "TokentrailSpanHandler"

    # -- BaseSpanHandler -------------------------------------------------------------------
    # -- BaseSpanHandler -------------------------------------------------------------------
    # span_enter / span_exit / span_drop: the base class's, without its lock (a dict's get,
    # set and pop are atomic under the GIL, and a span id is entered and left once)
    def span_enter(self, id_: str, bound_args: inspect.BoundArguments, instance: Any | None = None, parent_id: str | None = None, tags: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if id_ not in self.open_spans:
            span = self.new_span(id_=id_, bound_args=bound_args, instance=instance, parent_span_id=parent_id, tags=tags)
            if span is not None:
                self.open_spans[id_] = span

    def span_exit(self, id_: str, bound_args: inspect.BoundArguments, instance: Any | None = None, result: Any | None = None, **kwargs: Any) -> None:
        if self.prepare_to_exit_span(id_=id_, bound_args=bound_args, instance=instance, result=result) is not None:
            self.open_spans.pop(id_, None)

    def span_drop(self, id_: str, bound_args: inspect.BoundArguments, instance: Any | None = None, err: BaseException | None = None, **kwargs: Any) -> None:
        if self.prepare_to_drop_span(id_=id_, bound_args=bound_args, instance=instance, err=err) is not None:
            self.open_spans.pop(id_, None)

    def new_span(self, id_: str, bound_args: inspect.BoundArguments, instance: Any | None = None, parent_span_id: str | None = None, tags: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        try:
            return self._new_span(id_, bound_args, instance, parent_span_id, tags)
        except Exception as e:
            self.errors.record(e, "new_span")
            return None

    def _new_span(self, id_: str, bound_args: inspect.BoundArguments, instance: Any, parent_span_id: str | None, tags: dict[str, Any] | None) -> Span | Alias:
        parent = self.resolve(parent_span_id)
        if parent is None and parent_span_id is None and self.gen_frames:
            parent = self._continuation()
        instance_id = id(instance) if instance is not None else 0
        qualname = id_.partition("-")[0]
        cls_name, _, method = qualname.rpartition(".")
        kind = cl.classify(instance, method, tags)
        if kind.kind == cl.K_SKIP or (instance_id and parent is not None and parent.instance_id == instance_id):
            return Alias(parent, instance_id)

        if kind.kind == cl.K_LLM and parent is not None and parent.kind == cl.K_LLM:
            self._demote(parent)

        rt = seams.current()
        s = Span()
        s.id = id_
        s.rt = rt
        s.kind = kind.kind
        s.operation = kind.operation
        s.instance_id = instance_id
        s.capture = rt.settings.capture_content
        # a child inherits its parent's attribution: a lazy generator or a thread may run the
        # child outside the caller's `attributes` block; an inner block still wins
        current = tt_context.current()
        s.current = current
        if parent is None:
            s.attribution = rt.defaults.merged(current)
        elif current is parent.current or current is tt_context.EMPTY:
            s.attribution = parent.attribution
        else:
            s.attribution = parent.attribution.merged(current)

        model_call = kind.kind in (cl.K_LLM, cl.K_EMBEDDING)
        model = provider = None
        extra: dict[str, Any] | None = None
        if model_call:
            model = models.model_of(instance)
            provider = models.provider_of(model, instance)
            if kind.kind == cl.K_LLM:
                s.chain_name = f"{cls_name}.{method}"
                s.max_tokens = models.max_tokens_of(instance)
                if s.max_tokens is not None:
                    extra = {sc.GEN_AI_REQUEST_MAX_TOKENS: s.max_tokens}
            else:
                s.texts = bound_args.arguments
                s.chunks = []
            name = common.span_name(kind.operation, model)
        else:
            name, extra = tools.describe(kind.kind, kind.operation, instance, cls_name, method, bound_args.arguments, s.capture)

        attrs = common.start_attributes(
            operation=kind.operation,
            framework=FRAMEWORK,
            attribution=s.attribution,
            provider=provider,
            request_model=model,
        )
        if extra:
            attrs.update(extra)
        s.start_ns = rt.now_ns()
        span_kind = SpanKind.CLIENT if model_call else SpanKind.INTERNAL
        s.otel = spans.start(rt, name, parent.ctx if parent is not None else None, span_kind, attrs, s.start_ns)
        if model_call:
            s.call = ModelCall(rt, s.otel, s.attribution, model, provider, s.start_ns)
        s.ctx = trace.set_span_in_context(s.otel)
        s.token = otel_context.attach(s.ctx)
        return s

    def _demote(self, s: Span) -> None:
        """A model span with a model call inside is a wrapper (StructuredLLM, a router LLM,
        a user's LLM delegating to another): the inner call carries the usage, so the wrapper
        becomes a chain span that bills nothing and holds no budget reservation."""
        s.kind = cl.K_CHAIN
        s.operation = sc.OP_CHAIN
        s.otel.set_attribute(sc.GEN_AI_OPERATION_NAME, sc.OP_CHAIN)
        s.otel.update_name(s.chain_name)
        if s.call is not None:
            s.call.release()
            s.call = None

    def prepare_to_exit_span(self, id_: str, bound_args: inspect.BoundArguments, instance: Any | None = None, result: Any | None = None, **kwargs: Any) -> Any:
        entry = self.open_spans.get(id_)
        if entry is None:
            return None
        if type(entry) is Alias:
            if entry.target is not None and result is not None:
                self._maybe_remember_generator(entry.target, result)
            return entry
        s: Span = entry
        try:
            self._exit(s, result)
        except Exception as e:
            self.errors.record(e, "prepare_to_exit_span")
        return s

    def _exit(self, s: Span, result: Any) -> None:
        self._release_context(s)
        kind = s.kind
        if kind == cl.K_LLM and not s.ended and (type(result) is GeneratorType or type(result) is AsyncGeneratorType):
            # a stream: the call runs while the caller iterates; keep the span open
            s.exited = True
            with self.stream_lock:
                self.streaming[s.id] = s
            if s.call is not None and s.call.done:  # the stream already finished (an eager integration)
                self._end_stream(s)
            else:
                weakref.finalize(result, _abandoned, weakref.ref(self), s.id)
            return
        if kind == cl.K_LLM:
            self._finish_model(s, result)
        elif kind == cl.K_EMBEDDING:
            self._finish_embedding(s)
        elif result is not None:
            if kind == cl.K_TOOL and s.capture:
                s.otel.set_attribute(sc.GEN_AI_TOOL_CALL_RESULT, tools.tool_result(result))
            self._maybe_remember_generator(s, result)
        self._end(s)


    def prepare_to_drop_span(self, id_: str, bound_args: inspect.BoundArguments, instance: Any | None = None, err: BaseException | None = None, **kwargs: Any) -> Any:
        entry = self.open_spans.get(id_)
        if entry is None or type(entry) is Alias:
            return entry
        s: Span = entry
        with self.errors.guard("prepare_to_drop_span"):
            self._release_context(s)
            if s.kind == cl.K_LLM and s.call is not None and not s.call.done:
                # failed before usage was known (a stream's span has exited before it streams):
                # nothing billed, the reservation is released
                s.call.finish(None)
            elif s.kind == cl.K_EMBEDDING:
                self._finish_embedding(s)
            if isinstance(err, GeneratorExit):
                s.otel.set_attribute(sc.ABANDONED, True)  # the caller stopped reading: no error
            elif err is not None:
                common.record_error(s.otel, err)
            else:
                s.otel.set_status(Status(StatusCode.ERROR))
            self._end(s)
        return s

    # -- propagation across runtimes (llama-index-workflows) -------------------------------
    def capture_propagation_context(self) -> dict[str, Any]:
        """The caller's trace and attribution, for a workflow run in another task or process."""
        with self.errors.guard("capture_propagation_context"):
            carrier: dict[str, str] = {}
            _propagator.inject(carrier)
            a = tt_context.current()
            attribution = {f: a.get(f) for f in tt_context.FIELDS if a.get(f)}
            if carrier or attribution:
                return {PROPAGATION_KEY: {"trace": carrier, "attribution": attribution}}
        return {}

    def restore_propagation_context(self, context: dict[str, Any]) -> None:
        with self.errors.guard("restore_propagation_context"):
            data = context.get(PROPAGATION_KEY)
            if not isinstance(data, dict):
                return
            # only where nothing is active: an in-process run already inherited both
            carrier = data.get("trace") or {}
            if carrier and not trace.get_current_span().get_span_context().is_valid:
                otel_api.attach(_propagator.extract(carrier))
            attribution = data.get("attribution") or {}
            if attribution and tt_context.current() == tt_context.EMPTY:
                fields = dict(attribution)
                if "tags" in fields and isinstance(fields["tags"], str):
                    fields["tags"] = [t for t in fields["tags"].split(",") if t]
                tt_context._current.set(tt_context._coerce(fields))


def _abandoned(handler_ref: Callable[[], TokentrailSpanHandler | None], span_id: str) -> None:
    handler = handler_ref()
    if handler is not None:
        handler.abandon(span_id)
