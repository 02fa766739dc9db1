"""TokentrailCallbackHandler: LangChain runs -> OpenTelemetry spans with tokens and cost.

One span per run, parented as the runs nest (parent_run_id), inside the caller's active trace.
Each run's span is attached as the current OTel context while the run is open, so spans made
inside it (a provider SDK's, httpx instrumentation, embeddings) nest under it, across
LangChain's thread pools and asyncio tasks (see otel_context for the detaching rules).

Hot path (chain spans): a handful of attributes, no copies of inputs or outputs, cached
attribution attributes. Model spans add usage and cost when the run ends.

Every span ends: on the run's end or error callback, or, when that never comes (an abandoned
stream finalised out of order, a model call cancelled inside agenerate), when its root run
ends; if the root failed with an exception, its open runs get `orphan_grace_s` to end by
themselves first (sibling branches of asyncio.gather run on after the first error).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from ... import _internal, tokens
from ... import context as attribution_context
from ... import semconv as sc
from ...context import EMPTY, Attribution
from ...pricing import Cost
from ...providers import infer_provider
from ...usage import Usage, from_langchain_result
from .. import common, seams, spans
from . import async_manager, extract
from . import otel_context as ctxs

__all__ = ["FRAMEWORK", "TokentrailCallbackHandler", "langchain_handler"]

FRAMEWORK = "langchain"
ABANDONED = sc.ABANDONED
CACHE_SAVED_USD = sc.CACHE_HIT_SAVED_USD
RETRIES = sc.RETRIES
RETRIEVED_DOCUMENTS = sc.RETRIEVAL_DOCUMENTS
TOOL_ARGUMENTS = "gen_ai.tool.call.arguments"
TOOL_RESULT = "gen_ai.tool.call.result"

_ZERO = Decimal("0E-9")
_CACHE_HIT_COST = Cost(_ZERO, _ZERO, _ZERO, sc.COST_PRICED, "langchain cache hit")


# run id -> the handler recording it. Two tokentrail handlers on one run (a global one from
# instrument_langchain and an explicit one merged into the same config) would double every
# span and every dollar: the first to see a run records it, the other ignores it.
# Runs are keyed by `run_id.int` here and below: a UUID's hash is a Python-level call.
_CLAIMS: dict[int, TokentrailCallbackHandler] = {}


class _Failure:
    """What a deferred sweep keeps of a root's exception: its type and message, not the
    exception itself (whose traceback would keep the failed call's frames alive)."""

    __slots__ = ("message", "type_name")

    def __init__(self, error: BaseException) -> None:
        self.type_name = type(error).__qualname__
        self.message = str(error)[:500]


class _Run:
    """One open LangChain run. `span` is None for runs we pass through (hidden runs).

    No __slots__ on purpose: the class attributes are the defaults, so making a run sets only
    what differs (this is on the path of every callback)."""

    span: spans.RunSpan | None = None
    ctx: Context | None = None
    token: object | None = None
    attribution: Attribution = EMPTY
    attrs: Mapping[str, Any] = {}
    root: _Run | None = None  # None: this run is a root
    parent: _Run | None = None
    child_error = 0  # id() of the exception a child run already recorded
    children: dict[int, _Run] | None = None  # roots only: open descendants
    model_call = False
    operation = sc.OP_CHAIN
    model: str | None = None
    provider: str | None = None
    messages: Sequence[Any] | None = None
    prompts: Sequence[str] | None = None
    start_ns = 0
    first_token_ns = 0
    pieces: list[str] | None = None
    reservation: Any = None
    retries = 0
    batch: tuple[int, UUID | None] | None = None  # (thread, parent run) of a multi-prompt call
    dupes = 0  # starts of this run id inside the run (see _open)
    prompt_count = -1  # the prompt's exact token count, once counted

    def __init__(self, run_id: UUID, key: int, rt: seams.Recorder) -> None:
        self.run_id = run_id
        self.key = key
        self.rt = rt


@functools.lru_cache(maxsize=2048)
def _classify_chain(name: str, node: str | None, langgraph: bool) -> tuple[str, str]:
    """(operation, span name) of a chain run: LangGraph graphs and agents get their GenAI names."""
    agent = "agent" in name.lower()
    if node is not None and node == name:  # a LangGraph node
        return (sc.OP_INVOKE_AGENT, f"invoke_agent {name}") if agent else (sc.OP_CHAIN, name)
    if (langgraph and node is None) or name == "LangGraph":  # the graph itself
        if agent:
            return sc.OP_INVOKE_AGENT, f"invoke_agent {name}"
        return sc.OP_INVOKE_WORKFLOW, f"invoke_workflow {name}"
    if agent:  # AgentExecutor and friends
        return sc.OP_INVOKE_AGENT, f"invoke_agent {name}"
    return sc.OP_CHAIN, name


def _serialized_name(serialized: Mapping[str, Any] | None) -> str | None:
    if not serialized:
        return None
    name = serialized.get("name")
    if isinstance(name, str) and name:
        return name
    ident = serialized.get("id")
    if isinstance(ident, Sequence) and ident and isinstance(ident[-1], str):
        return ident[-1]
    return None


# metadata keys attribution_context.from_langchain reads
_ATTRIBUTION_KEYS = frozenset(
    [f for f in attribution_context.FIELDS if f != "tags"]
    + [f"tokentrail_{f}" for f in attribution_context.FIELDS if f != "tags"]
    + ["langfuse_user_id", "langfuse_session_id", "thread_id", "conversation_id"]
)


def _carries_attribution(metadata: Mapping[str, Any] | None, tags: Sequence[str] | None) -> bool:
    """Whether a run's metadata / tags can change its attribution (most runs': no)."""
    if metadata and not _ATTRIBUTION_KEYS.isdisjoint(metadata):
        return True
    if tags:
        for t in tags:
            if not t.startswith("seq:step:"):
                return True
    return False


def _when(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)


class TokentrailCallbackHandler(BaseCallbackHandler):
    """A LangChain callback handler recording every run as an OpenTelemetry span.

    Keyword arguments are attribution (project, environment, team, feature, user_id,
    session_id, tags); they override `tokentrail.attributes()` and the configure defaults,
    and are overridden by LangChain run metadata / tags.
    """

    # BudgetExceeded must reach the caller; everything else goes to _internal.swallow_errors
    raise_error = True
    # called inline in the caller's task/thread: that is where the OTel context must change
    run_inline = True
    # runs still open when their root failed with an exception get this long to end by
    # themselves (asyncio.gather raises the first error while the other branches run on: their
    # calls are real and billed)
    orphan_grace_s = 300.0

    def __init__(self, **attribution: Any) -> None:
        super().__init__()
        self.attribution: Attribution = attribution_context._coerce(attribution) if attribution else EMPTY
        self._runs: dict[int, _Run] = {}
        self._lock = threading.Lock()
        self._base: tuple[Attribution, seams.Recorder, Attribution] | None = None
        self._attr_cache: dict[Attribution, dict[str, Any]] = {}
        self._deferred: list[tuple[float, _Run, _Failure]] = []
        async_manager.install(_release_context, TokentrailCallbackHandler)

    def __repr__(self) -> str:
        return f"TokentrailCallbackHandler({self.attribution!r})"

    # -- bookkeeping -----------------------------------------------------------------------
    @property
    def open_runs(self) -> int:
        """Runs started and not yet ended (a leak shows here)."""
        return len(self._runs)

    def _root_attribution(self, rt: seams.Recorder) -> Attribution:
        """configure defaults < tokentrail.attributes() < this handler's kwargs."""
        cur = attribution_context.current()
        base = self._base
        if base is not None and base[0] is cur and base[1] is rt:
            return base[2]
        merged = rt.defaults.merged(cur).merged(self.attribution)
        self._base = (cur, rt, merged)
        return merged

    def _attribution_attrs(self, attribution: Attribution) -> dict[str, Any]:
        attrs = self._attr_cache.get(attribution)
        if attrs is None:
            # as the SDK would store them: sequences as tuples
            attrs = {k: tuple(v) if isinstance(v, list) else v for k, v in attribution.span_attributes().items()}
            if len(self._attr_cache) > 1024:
                self._attr_cache.clear()
            self._attr_cache[attribution] = attrs
        return attrs

    def _open(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
    ) -> tuple[_Run, Context | None] | None:
        """A new run record with its attribution and root, and the parent context; None when
        another tokentrail handler records this run."""
        key = run_id.int
        if _CLAIMS.setdefault(key, self) is not self:
            return None
        runs = self._runs
        same = runs.get(key)
        if same is not None:
            # the run id started again inside its own run (a config passed on with its
            # run_id): langchain-core goes on; the inner start and end are the same run's
            same.dupes += 1
            return None
        if self._deferred:
            self._sweep_expired()
        ctxs.heal()
        rt = seams.current()
        run = _Run(run_id, key, rt)
        parent = runs.get(parent_run_id.int) if parent_run_id is not None else None
        if parent is not None:
            parent_ctx = parent.ctx
            attribution = parent.attribution
            attrs = parent.attrs
            run.root = parent.root or parent
            run.parent = parent
        else:
            # a root run, or a child of a run this handler never saw: join the caller's trace
            parent_ctx = ctxs.effective_parent()
            attribution = self._root_attribution(rt)
            attrs = None
        if (metadata or tags) and _carries_attribution(metadata, tags):
            from_run = attribution_context.from_langchain(metadata, tags)
            if from_run is not EMPTY:
                merged = attribution.merged(from_run)
                if merged != attribution:
                    attribution, attrs = merged, None
        run.attribution = attribution
        run.attrs = attrs if attrs is not None else self._attribution_attrs(attribution)
        # registered before its span exists: should anything below fail, the run's end
        # callback still finds it and ends whatever was started
        self._register(run)
        return run, parent_ctx

    def _take(self, run_id: UUID) -> _Run | None:
        """The run an end callback ends (None when not ours, or when it ends a repeated start)."""
        key = run_id.int
        run = self._runs.pop(key, None)
        if run is not None and run.dupes:
            run.dupes -= 1
            self._runs[key] = run
            return None
        return run

    def _register(self, run: _Run) -> None:
        # dict operations are atomic under the GIL; only a root's sweep takes the lock
        self._runs[run.key] = run
        root = run.root
        if root is not None:
            children = root.children
            if children is None:
                with self._lock:
                    if root.children is None:
                        root.children = {}
                    children = root.children
            children[run.key] = run

    def _unregister(self, run: _Run) -> None:
        self._runs.pop(run.key, None)
        _CLAIMS.pop(run.key, None)
        root = run.root
        if root is not None and root.children is not None:
            root.children.pop(run.key, None)

    def _activate(self, run: _Run, parent_ctx: Context | None) -> None:
        """Make the run's span the current context."""
        assert run.span is not None
        base = parent_ctx if parent_ctx is not None else otel_context.get_current()
        run.ctx = ctxs.context_for(run.span, base, root=run.root is None, attribution=run.attribution)
        run.token = ctxs.attach(run.ctx)

    def _start_span(
        self,
        run: _Run,
        parent_ctx: Context | None,
        name: str,
        operation: str,
        kind: SpanKind,
        extra: Mapping[str, Any] | None = None,
    ) -> spans.RunSpan:
        attrs: dict[str, Any] = {sc.GEN_AI_OPERATION_NAME: operation, sc.FRAMEWORK: FRAMEWORK}
        if extra:
            attrs.update(extra)
        attrs.update(run.attrs)
        run.operation = operation
        run.start_ns = run.rt.clock()
        span = spans.start(run.rt, name, parent_ctx, kind, attrs, run.start_ns)
        run.span = span
        return span

    def _close(self, run: _Run, error: BaseException | _Failure | None = None, *, abandoned: bool = False) -> None:
        """End the run's span (status from error), take its context off, forget the run."""
        _CLAIMS.pop(run.key, None)
        span = run.span
        if span is not None:
            if error is None:
                pass
            elif isinstance(error, _Failure):
                span.set_attribute(sc.ERROR_TYPE, error.type_name)
                span.set_status(Status(StatusCode.ERROR, error.message))
            elif not isinstance(error, GeneratorExit) and not extract.is_control_flow(error):
                if run.child_error == id(error):
                    # the same exception passing up from a child: its traceback is on the
                    # child's span already (formatting it costs ~1 ms a span)
                    span.set_attribute(sc.ERROR_TYPE, type(error).__qualname__)
                    span.set_status(Status(StatusCode.ERROR, str(error)[:500]))
                else:
                    common.record_error(span, error)
                if run.parent is not None:
                    run.parent.child_error = id(error)
            if abandoned or (error is not None and isinstance(error, GeneratorExit)):
                # the caller stopped reading a stream (not an error in itself), or the run's
                # end never came and it ends with its root
                span.set_attribute(ABANDONED, True)
            if run.retries:
                span.set_attribute(RETRIES, run.retries)
            span.end(end_time=run.rt.clock())
        if run.token is not None and run.ctx is not None:
            ctxs.detach(run.ctx, run.token)
            run.token = None
        root = run.root
        if root is not None:
            children = root.children
            if children is not None:
                children.pop(run.key, None)
        elif run.children:
            # an ordinary exception may leave sibling branches running (asyncio.gather);
            # success, an abandoned stream or a cancellation leaves nothing that will end itself
            # (langchain-core sends no end callback to a model run cancelled inside agenerate)
            if error is None or not isinstance(error, Exception) or self.orphan_grace_s <= 0:
                self._sweep(run, error)
            else:
                with self._lock:
                    self._deferred.append((time.monotonic() + self.orphan_grace_s, run, _Failure(error)))

    def _sweep_expired(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [d for d in self._deferred if d[0] <= now]
            if not due:
                return
            self._deferred = [d for d in self._deferred if d[0] > now]
        for _, root, error in due:
            self._sweep(root, error)

    def _sweep(self, root: _Run, error: BaseException | _Failure | None) -> None:
        """End runs still open when their root ended (their end callback never came, or comes
        after the root's, as with a stream abandoned half way). A root that failed gives them
        orphan_grace_s first (see _close)."""
        with self._lock:
            orphans = list((root.children or {}).values())
            root.children = None
        for orphan in orphans:
            if self._runs.pop(orphan.key, None) is None:
                continue
            orphan.root = None  # nothing left to unregister from
            if orphan.model_call and orphan.span is not None:
                self._settle_model(orphan, None, error, abandoned=True)
            self._close(orphan, error, abandoned=True)

    # -- chains, tools, retrievers ---------------------------------------------------------
    @_internal.swallow_errors
    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        opened = self._open(run_id, parent_run_id, tags, metadata)
        if opened is None:
            return
        run, parent_ctx = opened
        if tags and "langsmith:hidden" in tags:
            # framework plumbing (LangGraph channel writes...): no span, children pass through
            run.ctx = parent_ctx
            return
        name = kwargs.get("name") or _serialized_name(serialized) or "chain"
        if metadata:
            node = metadata.get("langgraph_node")
            langgraph = metadata.get("ls_integration") == "langgraph"
            operation, span_name = _classify_chain(name, node if isinstance(node, str) else None, langgraph)
        else:
            operation, span_name = _classify_chain(name, None, False)
        extra = {sc.GEN_AI_AGENT_NAME: name} if operation == sc.OP_INVOKE_AGENT else None
        self._start_span(run, parent_ctx, span_name, operation, SpanKind.INTERNAL, extra)
        self._activate(run, parent_ctx)

    @_internal.swallow_errors
    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._take(run_id)
        if run is not None:
            self._close(run)

    @_internal.swallow_errors
    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._take(run_id)
        if run is not None:
            self._close(run, error)

    @_internal.swallow_errors
    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        inputs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        opened = self._open(run_id, parent_run_id, tags, metadata)
        if opened is None:
            return
        run, parent_ctx = opened
        name = kwargs.get("name") or _serialized_name(serialized) or "tool"
        extra: dict[str, Any] = {sc.GEN_AI_TOOL_NAME: name}
        if run.rt.settings.capture_content:
            extra[TOOL_ARGUMENTS] = extract.text_json(inputs if inputs is not None else input_str)
        self._start_span(run, parent_ctx, common.span_name(sc.OP_EXECUTE_TOOL, name), sc.OP_EXECUTE_TOOL, SpanKind.INTERNAL, extra)
        self._activate(run, parent_ctx)

    @_internal.swallow_errors
    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._take(run_id)
        if run is None:
            return
        if run.span is not None and run.rt.settings.capture_content:
            run.span.set_attribute(TOOL_RESULT, extract.text_json(output))
        self._close(run)

    @_internal.swallow_errors
    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._take(run_id)
        if run is not None:
            self._close(run, error)

    @_internal.swallow_errors
    def on_retriever_start(
        self,
        serialized: dict[str, Any] | None,
        query: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        opened = self._open(run_id, parent_run_id, tags, metadata)
        if opened is None:
            return
        run, parent_ctx = opened
        name = kwargs.get("name") or _serialized_name(serialized) or "retriever"
        extra: dict[str, Any] = {sc.GEN_AI_DATA_SOURCE_ID: name}
        if run.rt.settings.capture_content:
            extra[sc.GEN_AI_INPUT_MESSAGES] = extract.input_messages_json(None, [query])
        self._start_span(run, parent_ctx, common.span_name(sc.OP_RETRIEVAL, name), sc.OP_RETRIEVAL, SpanKind.INTERNAL, extra)
        self._activate(run, parent_ctx)

    @_internal.swallow_errors
    def on_retriever_end(self, documents: Sequence[Any], *, run_id: UUID, **kwargs: Any) -> None:
        run = self._take(run_id)
        if run is None:
            return
        if run.span is not None:
            run.span.set_attribute(RETRIEVED_DOCUMENTS, len(documents))
        self._close(run)

    @_internal.swallow_errors
    def on_retriever_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._take(run_id)
        if run is not None:
            self._close(run, error)

    @_internal.swallow_errors
    def on_retry(self, retry_state: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.get(run_id.int)
        if run is not None and run.span is not None:
            run.retries += 1
            attempt = getattr(retry_state, "attempt_number", run.retries)
            run.span.add_event("retry", {"attempt": int(attempt)})

    # -- model calls -----------------------------------------------------------------------
    @_internal.swallow_errors
    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start_model(
            sc.OP_CHAT, serialized, run_id, parent_run_id, tags, metadata, kwargs, messages=messages[0] if messages else []
        )

    @_internal.swallow_errors
    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._start_model(sc.OP_TEXT_COMPLETION, serialized, run_id, parent_run_id, tags, metadata, kwargs, prompts=prompts)

    def _start_model(
        self,
        operation: str,
        serialized: Mapping[str, Any] | None,
        run_id: UUID,
        parent_run_id: UUID | None,
        tags: Sequence[str] | None,
        metadata: Mapping[str, Any] | None,
        kwargs: Mapping[str, Any],
        *,
        messages: Sequence[Any] | None = None,
        prompts: Sequence[str] | None = None,
    ) -> None:
        opened = self._open(run_id, parent_run_id, tags, metadata)
        if opened is None:
            return
        run, parent_ctx = opened
        params = kwargs.get("invocation_params")
        if not isinstance(params, Mapping):
            params = None
        model = extract.request_model(params, metadata)
        ls_provider = metadata.get("ls_provider") if metadata else None
        if ls_provider is None and params is not None:
            ls_provider = params.get("ls_provider")
        provider = infer_provider(
            model,
            class_name=extract.class_name(serialized, params),
            ls_provider=ls_provider if isinstance(ls_provider, str) else None,
        )
        run.model_call = True
        run.model, run.provider = model, provider
        run.messages, run.prompts = messages, prompts
        batch_size = kwargs.get("batch_size")
        if isinstance(batch_size, int) and batch_size > 1:
            run.batch = (threading.get_ident(), parent_run_id)
        extra: dict[str, Any] = {sc.GEN_AI_PROVIDER_NAME: provider}
        if model:
            extra[sc.GEN_AI_REQUEST_MODEL] = model
        max_out = extract.max_output_tokens(params, metadata)
        if max_out is not None:
            extra[sc.GEN_AI_REQUEST_MAX_TOKENS] = max_out
        temp = extract.temperature(params)
        if temp is not None:
            extra[sc.GEN_AI_REQUEST_TEMPERATURE] = temp
        rt = run.rt
        if rt.settings.capture_content:
            extra[sc.GEN_AI_INPUT_MESSAGES] = extract.input_messages_json(messages, prompts)
        span = self._start_span(run, parent_ctx, common.span_name(operation, model), operation, SpanKind.CLIENT, extra)
        if rt.budgets is not None:
            try:
                run.reservation = common.budget_reserve(
                    rt,
                    run.attribution,
                    model=model,
                    provider=provider,
                    prompt_tokens=self._prompt_tokens(run, bound=True),
                    max_output_tokens=max_out,
                )
            except BaseException as e:  # recorded on the span, then re-raised
                # blocked (or the budget check failed): the model is not called, LangChain
                # sends no end callback for this run, so its span ends here
                self._unregister(run)
                common.record_error(span, e)
                span.end(end_time=rt.now_ns())
                if run.batch is not None:
                    self._abort_batch(run.batch, e)
                raise
        self._activate(run, parent_ctx)

    def _abort_batch(self, batch: tuple[int, UUID | None], error: BaseException) -> None:
        """A multi-prompt generate() starts every prompt's run before calling the model; when
        one is blocked, LangChain abandons the call and ends none of the others: end them."""
        for run in list(self._runs.values()):
            if run.batch == batch and not run.first_token_ns and self._runs.pop(run.key, None) is not None:
                if run.reservation is not None:
                    common.budget_release(run.rt, run.reservation)
                    run.reservation = None
                self._close(run, error)

    @staticmethod
    def _prompt_tokens(run: _Run, *, bound: bool = False) -> int:
        """The prompt's tokens; bound=True (a reservation): an upper bound until the tokenizer
        has loaded, never a wait for it (see tokens.py). An exact count is kept for the
        estimate, should the provider report no usage."""
        if run.prompt_count >= 0:
            return run.prompt_count
        exact = not bound or tokens.counts_exactly(run.model)
        if run.messages:
            n = tokens.count_messages(run.messages, run.model, bound=bound)
        else:
            n = sum(tokens.count_tokens(p, run.model, bound=bound) for p in run.prompts or ())
        if exact:
            run.prompt_count = n
        return n

    @_internal.swallow_errors
    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.get(run_id.int)
        if run is None or not token:
            return
        if not run.first_token_ns:
            run.first_token_ns = run.rt.clock()
            run.pieces = []
        # kept for an estimate if the stream is abandoned before its usage arrives
        run.pieces.append(token if isinstance(token, str) else tokens.text_of(token))  # type: ignore[union-attr]

    @_internal.swallow_errors
    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._take(run_id)
        if run is None:
            return
        try:
            if run.span is not None:
                self._settle_model(run, response, None)
        finally:  # the span ends even if settling failed: a span never ended is a lost cost
            self._close(run)

    @_internal.swallow_errors
    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._take(run_id)
        if run is None:
            return
        try:
            if run.span is not None:
                self._settle_model(run, kwargs.get("response"), error)
        finally:
            self._close(run, error)

    def _settle_model(
        self, run: _Run, response: Any, error: BaseException | _Failure | None, *, abandoned: bool = False
    ) -> None:
        """Usage, cost and budget settlement of a model run that is ending."""
        rt, span = run.rt, run.span
        assert span is not None
        attrs: dict[str, Any] = {}
        if run.first_token_ns:
            attrs[sc.TIME_TO_FIRST_TOKEN_MS] = (run.first_token_ns - run.start_ns) / 1e6
        response_model = extract.response_model(response) if response is not None else None
        if response is not None and error is None and extract.is_cache_hit(response):
            # answered from LangChain's LLM cache: nothing was billed
            cost = _CACHE_HIT_COST
            saved = from_langchain_result(response)
            attrs[sc.CACHE_HIT] = True
            if saved is not None and not saved.is_empty:
                would = rt.prices.cost(saved, response_model or run.model, run.provider, _when(run.start_ns))
                if would.total_usd is not None:
                    attrs[CACHE_SAVED_USD] = format(would.total_usd, "f")
            attrs.update(common.cost_attributes(cost))
            attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = 0
            attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = 0
            if response_model:
                attrs[sc.GEN_AI_RESPONSE_MODEL] = response_model
            span.set_trusted(attrs)
        else:
            usage = self._usage(run, response, error, abandoned)
            if attrs:
                span.set_trusted(attrs)
            cost = common.record_usage(
                span,
                rt.prices,
                usage,
                model=run.model,
                provider=run.provider,
                when=_when(run.start_ns),
                response_model=response_model,
            )
        if response is not None and error is None and rt.settings.capture_content:
            span.set_attribute(sc.GEN_AI_OUTPUT_MESSAGES, extract.output_messages_json(response))
        if run.reservation is not None:
            if cost.status == sc.COST_NO_USAGE:  # nothing was billed: give the reservation back
                common.budget_release(rt, run.reservation)
            else:
                common.budget_settle(rt, run.reservation, cost)
            run.reservation = None

    def _usage(self, run: _Run, response: Any, error: BaseException | _Failure | None, abandoned: bool) -> Usage | None:
        usage = from_langchain_result(response) if response is not None else None
        if usage is not None and not usage.is_empty:
            return usage
        invalid = usage.invalid if usage is not None else ()  # the values dropped stay flagged
        llm_output = getattr(response, "llm_output", None)
        if error is None and isinstance(llm_output, Mapping) and "token_usage" in llm_output:
            # a batch's usage is reported once, on its first run: the others report {}
            return Usage(invalid=invalid)
        if error is not None or abandoned:
            # a failed call costs only if the provider started answering (a stream cut off
            # half way); an error before any token (HTTP 4xx/5xx) is not billed
            if not (run.first_token_ns or abandoned or isinstance(error, GeneratorExit)):
                return None
        return dataclasses.replace(self._estimate(run, response), invalid=invalid)

    def _estimate(self, run: _Run, response: Any) -> Usage:
        """Count with tokens.py when the provider sent no usage (fake models, cut streams)."""
        text = extract.generated_text(response) if response is not None else ""
        if not text and run.pieces:
            text = "".join(run.pieces)
        return Usage(
            input_tokens=self._prompt_tokens(run),
            output_tokens=tokens.count_tokens(text, run.model),
            estimated=True,
        )


def _release_context(run_id: UUID) -> None:
    """Take a run's context off now, in the caller's context (see async_manager)."""
    key = run_id.int
    handler = _CLAIMS.get(key)
    if handler is None:
        return
    run = handler._runs.get(key)
    if run is not None and not run.dupes and run.token is not None and run.ctx is not None:
        token, run.token = run.token, None
        ctxs.detach(run.ctx, token)


class _QuietBudgetBlocks(logging.Filter):
    """LangChain logs a WARNING for an exception re-raised from a callback (raise_error=True);
    a BudgetExceeded is tokentrail's own, already logged and recorded in budget_events."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (
            len(args) == 3 and args[0] == "TokentrailCallbackHandler" and str(args[2]).startswith("BudgetExceeded(")
        )


_quiet_filter = _QuietBudgetBlocks()
logging.getLogger("langchain_core.callbacks.manager").addFilter(_quiet_filter)


def langchain_handler(**attribution: Any) -> TokentrailCallbackHandler:
    """A callback handler for `config={"callbacks": [...]}`; keyword arguments are attribution."""
    return TokentrailCallbackHandler(**attribution)
