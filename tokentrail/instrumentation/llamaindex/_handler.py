"""LlamaIndex span and event handlers -> OpenTelemetry spans with usage, cost and budgets.

LlamaIndex's dispatcher calls `new_span` / `prepare_to_exit_span` / `prepare_to_drop_span` around
every decorated method, with the enclosing LlamaIndex span as `parent_span_id`, and sends events
(LLMChatStartEvent, LLMChatEndEvent, EmbeddingEndEvent...) tagged with the active span id.
`_classify` decides which LlamaIndex spans become OTel spans; the others are aliases of their
nearest emitted ancestor, so children and events find their way.

Pitfalls handled here (each one bit a peer):
- a streamed call's span *exits* when the generator is returned, before a token arrived: the span
  stays open (`streaming`) until LLMChatEndEvent (usage is on its last chunk) or ExceptionEvent
  (closed early / failed), and a generator that is dropped unstarted ends it from a finalizer;
- nested model calls on one LLM (CustomLLM's `chat` -> `complete`) send two start/end pairs to the
  same span: only the outermost pair counts, so nothing is reserved or billed twice;
- the dispatcher swallows every exception a handler raises, BudgetExceeded included: the handler
  stashes it and the patched `Dispatcher.event` (see `_install`) raises it in the caller, before
  the provider is called;
- the OTel context is attached while a span runs, so provider SDK spans nest under the model span.
"""

from __future__ import annotations

import inspect
import logging
import sys
import threading
import weakref
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from datetime import datetime, timezone
from types import AsyncGeneratorType, FrameType, GeneratorType
from typing import Any

from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import Field

from ... import _internal
from ... import context as tt_context
from ... import semconv as sc
from ...errors import BudgetExceeded
from ...providers import infer_provider
from ...tokens import count_tokens
from ...usage import Usage, from_mapping
from .. import common, seams, spans
from . import _classify as cl
from . import _content as ct
from . import _usage as lu

logger = logging.getLogger("tokentrail")

FRAMEWORK = "llamaindex"
PROPAGATION_KEY = "tokentrail"
# the same names as the LangChain integration's
ABANDONED = sc.ABANDONED
RETRIEVED_DOCUMENTS = sc.RETRIEVAL_DOCUMENTS
INCOMPLETE = sc.INCOMPLETE

# A BudgetExceeded raised inside a handler, waiting for the patched Dispatcher.event to raise
# it in the caller (LlamaIndex swallows exceptions from handlers).
pending_block: ContextVar[BaseException | None] = ContextVar("tokentrail_li_block", default=None)

_runtime_context = getattr(otel_context, "_RUNTIME_CONTEXT", None)
_propagator = TraceContextTextMapPropagator()


def _detach(token: object) -> None:
    # Exits normally run in the context that entered, but a sync method returning a Future
    # exits from a done-callback in another context, where a reset raises ValueError: nothing
    # to undo there, and the public detach() would log it as an error on every such call.
    try:
        if _runtime_context is not None:
            _runtime_context.detach(token)  # type: ignore[arg-type]
        else:  # pragma: no cover - every SDK we support has it
            otel_context.detach(token)  # type: ignore[arg-type]
    except Exception:  # a reset from another context: nothing to undo
        pass


def _model_of(instance: Any) -> str | None:
    """The model name of an LLM or embedding instance, cheapest source first. `metadata` is
    last: llama-index-llms-openai's raises for a model name it does not know."""
    for attr in ("model", "model_name"):
        v = getattr(instance, attr, None)
        if isinstance(v, str) and v:
            return None if v == "unknown" else v
    try:
        v = instance.metadata.model_name
    except Exception:  # the LLM's own metadata may raise for a model it does not know
        return None
    return v if isinstance(v, str) and v and v != "unknown" else None


def _max_tokens_of(instance: Any) -> int | None:
    v = getattr(instance, "max_tokens", None)
    if isinstance(v, int) and not isinstance(v, bool) and v > 0:
        return v
    return None


def _provider(model: str | None, instance: Any) -> str:
    return infer_provider(model, class_name=type(instance).__name__)


class _Span:
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
        # model and embedding calls
        "model",
        "provider",
        "max_tokens",
        "depth",
        "messages",
        "prompt",
        "reservation",
        "usage",
        "stream_usage",
        "response_model",
        "first_token_ns",
        "last_response",
        "recorded",
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
    ctx: otel_context.Context
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
        self.model: str | None = None
        self.provider: str | None = None
        self.max_tokens: int | None = None
        self.depth = 0
        self.messages: Sequence[Any] | None = None
        self.prompt: str | None = None
        self.reservation: Any = None
        self.usage: Usage | None = None
        self.stream_usage: Usage | None = None
        self.response_model: str | None = None
        self.first_token_ns: int | None = None
        self.last_response: Any = None
        self.recorded = False
        self.exited = False
        self.ended = False
        self.texts: Any = None
        self.chunks: list[Sequence[str]] | None = None
        self.event_usage: Usage | None = None


class _Alias:
    """A skipped LlamaIndex span: its children and events go to `target` (None: to the caller)."""

    __slots__ = ("target", "instance_id")

    def __init__(self, target: _Span | None, instance_id: int) -> None:
        self.target = target
        self.instance_id = instance_id


Errors = _internal.ErrorLog  # LlamaIndex swallows what a handler raises: errors are kept for tests


class TokentrailSpanHandler(BaseSpanHandler[Any]):  # type: ignore[type-var]
    """Maps LlamaIndex spans to OpenTelemetry spans (see the module docstring)."""

    # Plain fields, not PrivateAttr: pydantic serves private attributes through a Python
    # __getattr__ (~1 µs a read), and these are read on every span. (The base class's `lock`
    # property is such a read, twice per span: span_enter/exit below do without it.)
    streaming: dict[str, _Span] = Field(default_factory=dict, exclude=True)
    errors: Errors = Field(default_factory=Errors, exclude=True)
    stream_lock: Any = Field(default_factory=threading.Lock, exclude=True)
    # generator frame id -> (generator, the span that returned it): see _continuation
    gen_frames: dict[int, tuple[Any, _Span]] = Field(default_factory=dict, exclude=True)

    @classmethod
    def class_name(cls) -> str:
        return "TokentrailSpanHandler"

    # -- lookup ----------------------------------------------------------------------------
    def resolve(self, span_id: str | None) -> _Span | None:
        """The emitted span an event or a child belongs to."""
        if not span_id:
            return None
        entry = self.open_spans.get(span_id)
        if entry is None:
            return self.streaming.get(span_id)
        if type(entry) is _Alias:
            return entry.target
        return entry  # type: ignore[no-any-return]

    @property
    def streaming_count(self) -> int:
        return len(self.streaming)

    # -- BaseSpanHandler -------------------------------------------------------------------
    # span_enter / span_exit / span_drop: the base class's, without its lock (a dict's get,
    # set and pop are atomic under the GIL, and a span id is entered and left once)
    def span_enter(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        parent_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if id_ not in self.open_spans:
            span = self.new_span(id_=id_, bound_args=bound_args, instance=instance, parent_span_id=parent_id, tags=tags)
            if span is not None:
                self.open_spans[id_] = span

    def span_exit(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        result: Any | None = None,
        **kwargs: Any,
    ) -> None:
        if self.prepare_to_exit_span(id_=id_, bound_args=bound_args, instance=instance, result=result) is not None:
            self.open_spans.pop(id_, None)

    def span_drop(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        if self.prepare_to_drop_span(id_=id_, bound_args=bound_args, instance=instance, err=err) is not None:
            self.open_spans.pop(id_, None)

    def new_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        parent_span_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        try:
            return self._new_span(id_, bound_args, instance, parent_span_id, tags)
        except Exception as e:
            self.errors.record(e, "new_span")
            return None

    def _new_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any,
        parent_span_id: str | None,
        tags: dict[str, Any] | None,
    ) -> _Span | _Alias:
        parent = self.resolve(parent_span_id)
        if parent is None and parent_span_id is None and self.gen_frames:
            parent = self._continuation()
        instance_id = id(instance) if instance is not None else 0
        qualname = id_.partition("-")[0]
        cls_name, _, method = qualname.rpartition(".")
        kind = cl.classify(instance, method, tags)
        if kind.kind == cl.K_SKIP or (instance_id and parent is not None and parent.instance_id == instance_id):
            return _Alias(parent, instance_id)

        if kind.kind == cl.K_LLM and parent is not None and parent.kind == cl.K_LLM:
            self._demote(parent)

        rt = seams.current()
        s = _Span()
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

        name: str
        extra: dict[str, Any] | None = None
        if kind.kind == cl.K_LLM:
            s.chain_name = f"{cls_name}.{method}"
        if kind.kind in (cl.K_LLM, cl.K_EMBEDDING):
            s.model = _model_of(instance)
            s.provider = _provider(s.model, instance)
            if kind.kind == cl.K_LLM:
                s.max_tokens = _max_tokens_of(instance)
                if s.max_tokens is not None:
                    extra = {sc.GEN_AI_REQUEST_MAX_TOKENS: s.max_tokens}
            else:
                s.texts = bound_args.arguments
                s.chunks = []
            name = common.span_name(kind.operation, s.model)
        elif kind.kind == cl.K_RETRIEVER:
            name = common.span_name(kind.operation, cls_name)
            if s.capture:
                query = ct.query_messages(bound_args.arguments)
                if query is not None:
                    extra = {sc.GEN_AI_INPUT_MESSAGES: query}
        elif kind.kind == cl.K_TOOL:
            tool_name = _tool_name(instance) or cls_name
            name = common.span_name(kind.operation, tool_name)
            extra = {sc.GEN_AI_TOOL_NAME: tool_name}
            if s.capture:
                extra[ct.TOOL_ARGUMENTS] = ct.tool_arguments(bound_args.arguments)
        elif kind.kind == cl.K_AGENT:
            agent_name = getattr(instance, "name", None) or cls_name
            name = common.span_name(kind.operation, str(agent_name))
            extra = {sc.GEN_AI_AGENT_NAME: str(agent_name)}
        elif kind.kind == cl.K_WORKFLOW:
            name = common.span_name(kind.operation, cls_name)
        else:  # steps and chains: `Class.method` (a step's id is its function's qualname)
            name = f"{cls_name.rpartition('.')[2]}.{method}" if cls_name else method

        attrs = common.start_attributes(
            operation=kind.operation,
            framework=FRAMEWORK,
            attribution=s.attribution,
            provider=s.provider,
            request_model=s.model,
        )
        if extra:
            attrs.update(extra)
        s.start_ns = rt.now_ns()
        span_kind = SpanKind.CLIENT if kind.kind in (cl.K_LLM, cl.K_EMBEDDING) else SpanKind.INTERNAL
        s.otel = spans.start(rt, name, parent.ctx if parent is not None else None, span_kind, attrs, s.start_ns)
        s.ctx = trace.set_span_in_context(s.otel)
        s.token = otel_context.attach(s.ctx)
        return s

    def _demote(self, s: _Span) -> None:
        """A model span with a model call inside is a wrapper (StructuredLLM, a router LLM,
        a user's LLM delegating to another): the inner call carries the usage, so the wrapper
        becomes a chain span that bills nothing and holds no budget reservation."""
        s.kind = cl.K_CHAIN
        s.operation = sc.OP_CHAIN
        s.otel.set_attribute(sc.GEN_AI_OPERATION_NAME, sc.OP_CHAIN)
        s.otel.update_name(s.chain_name)
        common.budget_release(s.rt, s.reservation)
        s.reservation = None

    def prepare_to_exit_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        result: Any | None = None,
        **kwargs: Any,
    ) -> Any:
        entry = self.open_spans.get(id_)
        if entry is None:
            return None
        if type(entry) is _Alias:
            if entry.target is not None and result is not None:
                self._maybe_remember_generator(entry.target, result)
            return entry
        s: _Span = entry
        try:
            self._exit(s, result)
        except Exception as e:
            self.errors.record(e, "prepare_to_exit_span")
        return s

    def _exit(self, s: _Span, result: Any) -> None:
        self._release_context(s)
        kind = s.kind
        if kind == cl.K_LLM and not s.ended and (type(result) is GeneratorType or type(result) is AsyncGeneratorType):
            # a stream: the call runs while the caller iterates; keep the span open
            s.exited = True
            with self.stream_lock:
                self.streaming[s.id] = s
            if s.recorded:  # the stream already finished (an eager integration)
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
                s.otel.set_attribute(ct.TOOL_RESULT, ct.tool_result(result))
            self._maybe_remember_generator(s, result)
        self._end(s)

    # -- lazy generators -------------------------------------------------------------------
    # A streaming query returns a generator (StreamingResponse.response_gen) whose body calls
    # the LLM only when the caller iterates it, after the query span ended and outside any
    # LlamaIndex span: the model span would start a trace of its own. The frame of a generator
    # returned by a span is remembered; a span that starts with no parent looks up the stack
    # for such a frame and continues that span's trace. Only done while such generators live.
    def _maybe_remember_generator(self, owner: _Span, result: Any) -> None:
        t = type(result)
        if t is GeneratorType or t is AsyncGeneratorType:
            gen = result
        else:
            attr = _gen_attr_of(t)
            if attr is None:
                return
            gen = getattr(result, attr, None)
            if type(gen) is not GeneratorType and type(gen) is not AsyncGeneratorType:
                return
        with self.errors.guard("remember_generator"):
            frame = gen.gi_frame if type(gen) is GeneratorType else gen.ag_frame
            if frame is None:
                return
            key = id(frame)
            known = self.gen_frames.get(key)
            if known is not None and known[0]() is gen:
                return  # passed up through enclosing spans: the innermost one owns it
            ref = weakref.ref(gen)
            self.gen_frames[key] = (ref, owner)
            weakref.finalize(gen, self._forget_generator, key, ref)

    def _forget_generator(self, key: int, ref: Any) -> None:
        known = self.gen_frames.get(key)
        if known is not None and known[0] is ref:
            self.gen_frames.pop(key, None)

    def _continuation(self) -> _Span | None:
        frames = self.gen_frames
        f: FrameType | None = sys._getframe(3)
        for _ in range(64):
            if f is None:
                return None
            found = frames.get(id(f))
            if found is not None:
                gen = found[0]()
                if gen is not None and (getattr(gen, "gi_frame", None) is f or getattr(gen, "ag_frame", None) is f):
                    return found[1]
            f = f.f_back
        return None

    def prepare_to_drop_span(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> Any:
        entry = self.open_spans.get(id_)
        if entry is None or type(entry) is _Alias:
            return entry
        s: _Span = entry
        with self.errors.guard("prepare_to_drop_span"):
            self._release_context(s)
            if s.kind == cl.K_LLM and not s.recorded:
                # failed before usage was known: nothing billed, the reservation is freed
                common.budget_release(s.rt, s.reservation)
                s.reservation = None
                common.record_usage(
                    s.otel, s.rt.prices, None, model=s.model, provider=s.provider, when=_when(s)
                )
            elif s.kind == cl.K_EMBEDDING:
                self._finish_embedding(s)
            if isinstance(err, GeneratorExit):
                s.otel.set_attribute(ABANDONED, True)  # the caller stopped reading: no error
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
                otel_context.attach(_propagator.extract(carrier))
            attribution = data.get("attribution") or {}
            if attribution and tt_context.current() == tt_context.EMPTY:
                fields = dict(attribution)
                if "tags" in fields and isinstance(fields["tags"], str):
                    fields["tags"] = [t for t in fields["tags"].split(",") if t]
                tt_context._current.set(tt_context._coerce(fields))

    # -- model calls -----------------------------------------------------------------------
    def on_model_start(self, s: _Span, messages: Sequence[Any] | None, prompt: str | None, model_dict: Any) -> None:
        s.depth += 1
        if s.depth > 1:
            return  # a nested call of the same LLM (chat -> complete): one call, counted once
        s.messages = messages
        s.prompt = prompt
        if s.capture:
            s.otel.set_attribute(sc.GEN_AI_INPUT_MESSAGES, ct.input_messages(messages, prompt))
        if s.model is None and isinstance(model_dict, dict):
            m = model_dict.get("model") or model_dict.get("model_name")
            if isinstance(m, str) and m and m != "unknown":
                s.model = m
                s.otel.update_name(common.span_name(s.operation, m))
                s.otel.set_attribute(sc.GEN_AI_REQUEST_MODEL, m)
        rt = s.rt
        if rt.budgets is not None and s.reservation is None:
            try:
                s.reservation = common.budget_reserve(
                    rt,
                    s.attribution,
                    model=s.model,
                    provider=s.provider,
                    prompt_tokens=lu.prompt_tokens(messages, prompt, s.model, bound=True),
                    max_output_tokens=s.max_tokens,
                )
            except BudgetExceeded as e:
                pending_block.set(e)
                raise

    def on_model_progress(self, s: _Span, response: Any) -> None:
        if s.first_token_ns is None:
            s.first_token_ns = s.rt.now_ns()  # the runtime's clock, like the span times
        raw = getattr(response, "raw", None)
        if raw is not None:
            u = lu.raw_usage(raw, s.provider)
            if u is not None:
                s.stream_usage = lu.max_usage(s.stream_usage, u)
            if s.response_model is None:
                s.response_model = lu.raw_model(response)
        s.last_response = response

    def on_model_end(self, s: _Span, response: Any) -> None:
        if s.depth > 0:
            s.depth -= 1
        if s.depth > 0 or s.recorded:
            return
        s.last_response = response
        self._record_model(s, response)
        if s.exited:
            self._end_stream(s)

    def on_model_exception(self, s: _Span, error: BaseException) -> None:
        """A stream failed, or its consumer closed it early (GeneratorExit)."""
        if not s.exited or s.ended:
            return  # not a stream: prepare_to_drop_span follows
        if isinstance(error, GeneratorExit):
            # tokens were generated and billed up to the close: count what arrived
            s.otel.set_attribute(ABANDONED, True)
            self._record_model(s, s.last_response)
        else:
            if not s.recorded:
                common.budget_release(s.rt, s.reservation)
                s.reservation = None
                common.record_usage(s.otel, s.rt.prices, None, model=s.model, provider=s.provider, when=_when(s))
                s.recorded = True
            common.record_error(s.otel, error)
        self._end_stream(s)

    def abandon(self, span_id: str) -> None:
        """A stream generator was garbage-collected without running: no request was sent."""
        with self.errors.guard("abandon"):
            s = self.streaming.get(span_id)
            if s is None or s.ended:
                return
            if not s.recorded:
                common.budget_release(s.rt, s.reservation)
                s.reservation = None
                s.otel.set_attribute(ABANDONED, True)
                common.record_usage(s.otel, s.rt.prices, None, model=s.model, provider=s.provider, when=_when(s))
                s.recorded = True
            self._end_stream(s)

    def _record_model(self, s: _Span, response: Any) -> None:
        if s.recorded:
            return
        s.recorded = True
        usage = lu.max_usage(lu.response_usage(response, s.provider), s.stream_usage)
        if usage is None and (response is not None or s.messages or s.prompt):
            usage = lu.estimate(s.messages, s.prompt, lu.response_text(response), s.model)
        response_model = lu.raw_model(response) or s.response_model
        cost = common.record_usage(
            s.otel, s.rt.prices, usage, model=s.model, provider=s.provider, when=_when(s), response_model=response_model
        )
        if s.first_token_ns is not None:
            s.otel.set_attribute(sc.TIME_TO_FIRST_TOKEN_MS, (s.first_token_ns - s.start_ns) / 1e6)
        if s.capture and response is not None:
            s.otel.set_attribute(sc.GEN_AI_OUTPUT_MESSAGES, ct.output_messages(response))
        s.usage = usage
        common.budget_settle(s.rt, s.reservation, cost)
        s.reservation = None

    def _finish_model(self, s: _Span, result: Any) -> None:
        """At exit of a non-streamed model span. The end event normally recorded usage already;
        an LLM that sent no events still returned a response."""
        if not s.recorded:
            self._record_model(s, result if hasattr(result, "raw") else None)

    # -- embeddings ------------------------------------------------------------------------
    def on_embedding_start(self, s: _Span) -> None:
        rt = s.rt
        if rt.budgets is None or s.reservation is not None or s.depth:
            return
        s.depth = 1  # reserve once per span, for every text it was given
        texts = _texts_of(s.texts)
        try:
            s.reservation = common.budget_reserve(
                rt,
                s.attribution,
                model=s.model,
                provider=s.provider,
                prompt_tokens=sum(count_tokens(t, s.model, bound=True) for t in texts),
                max_output_tokens=0,
            )
        except BudgetExceeded as e:
            pending_block.set(e)
            raise

    def on_embedding_end(self, s: _Span, event: Any) -> None:
        reported = getattr(event, "usage", None)  # no LlamaIndex version sends it yet
        if reported is not None:
            u = from_mapping(reported, s.provider)
            if u is not None:
                s.event_usage = u if s.event_usage is None else s.event_usage + u
                return
        chunks = getattr(event, "chunks", None)
        if chunks and s.chunks is not None:
            s.chunks.append(chunks)

    def _finish_embedding(self, s: _Span) -> None:
        if s.recorded:
            return
        s.recorded = True
        usage = s.event_usage
        if usage is None and s.chunks:
            n = sum(count_tokens(t, s.model) for batch in s.chunks for t in batch if isinstance(t, str))
            usage = Usage(input_tokens=n, estimated=True)
        cost = common.record_usage(s.otel, s.rt.prices, usage, model=s.model, provider=s.provider, when=_when(s))
        s.usage = usage
        if usage is None:
            common.budget_release(s.rt, s.reservation)
        else:
            common.budget_settle(s.rt, s.reservation, cost)
        s.reservation = None

    # -- ending ----------------------------------------------------------------------------
    def _release_context(self, s: _Span) -> None:
        token, s.token = s.token, None
        if token is not None:
            _detach(token)

    def _end(self, s: _Span) -> None:
        if s.ended:
            return
        s.ended = True
        s.otel.end(end_time=s.rt.now_ns())

    def _end_stream(self, s: _Span) -> None:
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
            if type(entry) is _Span and not entry.ended:
                with self.errors.guard("end_all"):
                    common.budget_release(entry.rt, entry.reservation)
                    entry.reservation = None
                    entry.otel.set_attribute(INCOMPLETE, True)
                    self._end(entry)
                    n += 1
        with self.lock:
            self.open_spans.clear()
        return n


_GEN_ATTRS = ("response_gen", "async_response_gen", "achat_stream", "chat_stream")
_gen_attr_by_type: dict[type, str | None] = {}


def _gen_attr_of(t: type) -> str | None:
    """The field of a result type that holds a lazy generator (StreamingResponse.response_gen,
    StreamingAgentChatResponse.chat_stream...), looked up once per type."""
    try:
        return _gen_attr_by_type[t]
    except KeyError:
        pass
    fields = {
        *getattr(t, "__dataclass_fields__", {}),
        *(getattr(t, "model_fields", None) or {}),
    }
    found = next((a for a in _GEN_ATTRS if a in fields), None)
    if len(_gen_attr_by_type) < 4096:
        _gen_attr_by_type[t] = found
    return found


def _abandoned(handler_ref: Callable[[], TokentrailSpanHandler | None], span_id: str) -> None:
    handler = handler_ref()
    if handler is not None:
        handler.abandon(span_id)


def _when(s: _Span) -> datetime:
    return datetime.fromtimestamp(s.start_ns / 1e9, tz=timezone.utc)


def _tool_name(instance: Any) -> str | None:
    try:
        name = instance.metadata.name
    except Exception:  # a user object's metadata may raise
        return None
    return name if isinstance(name, str) and name else None


def _texts_of(arguments: Any) -> list[str]:
    """The texts an embedding method was called with (texts=[...], text=, query=, queries=)."""
    if not isinstance(arguments, dict):
        return []
    out: list[str] = []
    for key in ("texts", "queries", "text", "query"):
        v = arguments.get(key)
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, (list, tuple)):
            out.extend(t for t in v if isinstance(t, str))
    return out


class TokentrailEventHandler(BaseEventHandler):
    """Feeds LlamaIndex events to the span they belong to."""

    spans: TokentrailSpanHandler

    def __init__(self, span_handler: TokentrailSpanHandler) -> None:
        # `spans` is this subclass's pydantic field; mypy checks super().__init__ against the
        # base model's (field-less) synthesized signature
        super().__init__(spans=span_handler)  # type: ignore[call-arg]

    @classmethod
    def class_name(cls) -> str:
        return "TokentrailEventHandler"

    def handle(self, event: Any, **kwargs: Any) -> Any:
        fn = _dispatch(type(event))
        if fn is None:
            return None
        handler = self.spans
        s = handler.resolve(event.span_id)
        if s is None:
            return None
        try:
            fn(handler, s, event)
        except BudgetExceeded:
            raise
        except Exception as e:
            handler.errors.record(e, type(event).__name__)
        return None


# -- event dispatch ----------------------------------------------------------------------------

_EventFn = Callable[[TokentrailSpanHandler, _Span, Any], None]


def _llm_chat_start(h: TokentrailSpanHandler, s: _Span, e: Any) -> None:
    if s.kind == cl.K_LLM:
        h.on_model_start(s, e.messages, None, e.model_dict)


def _llm_completion_start(h: TokentrailSpanHandler, s: _Span, e: Any) -> None:
    if s.kind == cl.K_LLM:
        h.on_model_start(s, None, e.prompt, e.model_dict)


def _llm_progress(h: TokentrailSpanHandler, s: _Span, e: Any) -> None:
    if s.kind == cl.K_LLM:
        h.on_model_progress(s, e.response)


def _llm_end(h: TokentrailSpanHandler, s: _Span, e: Any) -> None:
    if s.kind == cl.K_LLM:
        h.on_model_end(s, e.response)


def _exception(h: TokentrailSpanHandler, s: _Span, e: Any) -> None:
    if s.kind == cl.K_LLM:
        h.on_model_exception(s, e.exception)


def _retrieval_end(h: TokentrailSpanHandler, s: _Span, e: Any) -> None:
    if s.kind == cl.K_RETRIEVER:
        nodes = getattr(e, "nodes", None)
        if nodes is not None:
            spans.set_trusted(s.otel, {RETRIEVED_DOCUMENTS: len(nodes)})


def _embedding_start(h: TokentrailSpanHandler, s: _Span, e: Any) -> None:
    if s.kind == cl.K_EMBEDDING:
        h.on_embedding_start(s)


def _embedding_end(h: TokentrailSpanHandler, s: _Span, e: Any) -> None:
    if s.kind == cl.K_EMBEDDING:
        h.on_embedding_end(s, e)


_BY_NAME: dict[str, _EventFn] = {
    "LLMChatStartEvent": _llm_chat_start,
    "LLMCompletionStartEvent": _llm_completion_start,
    "LLMChatInProgressEvent": _llm_progress,
    "LLMCompletionInProgressEvent": _llm_progress,
    "LLMChatEndEvent": _llm_end,
    "LLMCompletionEndEvent": _llm_end,
    "ExceptionEvent": _exception,
    "RetrievalEndEvent": _retrieval_end,
    "EmbeddingStartEvent": _embedding_start,
    "SparseEmbeddingStartEvent": _embedding_start,
    "EmbeddingEndEvent": _embedding_end,
    "SparseEmbeddingEndEvent": _embedding_end,
}
_by_type: dict[type, _EventFn | None] = {}


def _dispatch(event_type: type) -> _EventFn | None:
    """The function for an event type (by class name along its MRO, so subclasses and both
    the llama_index.core and llama_index_instrumentation event modules match); cached."""
    try:
        return _by_type[event_type]
    except KeyError:
        pass
    fn: _EventFn | None = None
    for klass in event_type.__mro__:
        fn = _BY_NAME.get(klass.__name__)
        if fn is not None:
            break
    if len(_by_type) < 1024:
        _by_type[event_type] = fn
    return fn
