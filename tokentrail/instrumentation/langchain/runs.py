"""The runs a TokentrailCallbackHandler has open: one span per run, parented as the runs nest
(parent_run_id), inside the caller's active trace. Each run's span is attached as the current
OTel context while the run is open, so spans made inside it (a provider SDK's, httpx
instrumentation, embeddings) nest under it, across LangChain's thread pools and asyncio tasks
(see otel_context for the detaching rules).

Every span ends: on the run's end or error callback, or, when that never comes (an abandoned
stream finalised out of order, a model call cancelled inside agenerate), when its root run
ends; if the root failed with an exception, its open runs get `orphan_grace_s` to end by
themselves first (sibling branches of asyncio.gather run on after the first error).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from ... import _internal
from ... import context as attribution_context
from ... import semconv as sc
from ...context import EMPTY, Attribution
from .. import common, seams, spans
from ..lifecycle import ModelCall
from . import async_manager, extract, readers
from . import otel_context as ctxs

__all__ = ["CLAIMS", "FRAMEWORK", "Failure", "Run", "RunBook"]

FRAMEWORK = "langchain"

# run id -> the handler recording it. Two tokentrail handlers on one run (a global one from
# instrument_langchain and an explicit one merged into the same config) would double every
# span and every dollar: the first to see a run records it, the other ignores it.
# Runs are keyed by `run_id.int` here and below: a UUID's hash is a Python-level call.
CLAIMS: dict[int, RunBook] = {}


class Failure:
    """What a deferred sweep keeps of a root's exception: its type and message, not the
    exception itself (whose traceback would keep the failed call's frames alive)."""

    __slots__ = ("message", "type_name")

    def __init__(self, error: BaseException) -> None:
        self.type_name = type(error).__qualname__
        self.message = str(error)[:500]



class Run:
    """One open LangChain run. `span` is None for runs we pass through (hidden runs).

    No __slots__ on purpose: the class attributes are the defaults, so making a run sets only
    what differs (this is on the path of every callback)."""

    span: spans.RunSpan | None = None
    ctx: Context | None = None
    token: object | None = None
    attribution: Attribution = EMPTY
    attrs: Mapping[str, Any] = {}
    root: Run | None = None  # None: this run is a root
    parent: Run | None = None
    child_error = 0  # id() of the exception a child run already recorded
    children: dict[int, Run] | None = None  # roots only: open descendants
    operation = sc.OP_CHAIN
    call: ModelCall | None = None  # model runs: the shared model-call lifecycle
    model: str | None = None
    start_ns = 0
    messages: Sequence[Any] | None = None
    prompts: Sequence[str] | None = None
    pieces: list[str] | None = None
    retries = 0
    batch: tuple[int, UUID | None] | None = None  # (thread, parent run) of a multi-prompt call
    dupes = 0  # starts of this run id inside the run (see _open)
    prompt_count = -1  # the prompt's exact token count, once counted

    def __init__(self, run_id: UUID, key: int, rt: seams.Recorder) -> None:
        self.run_id = run_id
        self.key = key
        self.rt = rt



# metadata keys readers.attribution_of reads
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



class RunBook(BaseCallbackHandler):
    """The runs one handler has open: opening (claim, attribution, parent context), the span
    and its context, closing, and the sweep of runs whose end never came. The callbacks are
    in models.py, tools.py and handler.py."""

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
        self._runs: dict[int, Run] = {}
        self._lock = threading.Lock()
        self._base: tuple[Attribution, seams.Recorder, Attribution] | None = None
        self._attr_cache: dict[Attribution, dict[str, Any]] = {}
        self._deferred: list[tuple[float, Run, Failure]] = []
        async_manager.install(_release_context, RunBook)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.attribution!r})"

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
    ) -> tuple[Run, Context | None] | None:
        """A new run record with its attribution and root, and the parent context; None when
        another tokentrail handler records this run."""
        key = run_id.int
        if CLAIMS.setdefault(key, self) is not self:
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
        run = Run(run_id, key, rt)
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
            from_run = readers.attribution_of(metadata, tags)
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

    def _take(self, run_id: UUID) -> Run | None:
        """The run an end callback ends (None when not ours, or when it ends a repeated start)."""
        key = run_id.int
        run = self._runs.pop(key, None)
        if run is not None and run.dupes:
            run.dupes -= 1
            self._runs[key] = run
            return None
        return run

    @_internal.swallow_errors
    def _end_with_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """on_chain_error / on_tool_error / on_retriever_error: the run ends with the error."""
        run = self._take(run_id)
        if run is not None:
            self._close(run, error)

    def _register(self, run: Run) -> None:
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

    def _unregister(self, run: Run) -> None:
        self._runs.pop(run.key, None)
        CLAIMS.pop(run.key, None)
        root = run.root
        if root is not None and root.children is not None:
            root.children.pop(run.key, None)

    def _activate(self, run: Run, parent_ctx: Context | None) -> None:
        """Make the run's span the current context."""
        assert run.span is not None
        base = parent_ctx if parent_ctx is not None else otel_context.get_current()
        run.ctx = ctxs.context_for(run.span, base, root=run.root is None, attribution=run.attribution)
        run.token = ctxs.attach(run.ctx)

    def _start_span(
        self,
        run: Run,
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

    def _close(self, run: Run, error: BaseException | Failure | None = None, *, abandoned: bool = False) -> None:
        """End the run's span (status from error), take its context off, forget the run."""
        CLAIMS.pop(run.key, None)
        span = run.span
        if span is not None:
            if error is None:
                pass
            elif isinstance(error, Failure):
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
                span.set_attribute(sc.ABANDONED, True)
            if run.retries:
                span.set_attribute(sc.RETRIES, run.retries)
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
                    self._deferred.append((time.monotonic() + self.orphan_grace_s, run, Failure(error)))

    def _sweep_expired(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [d for d in self._deferred if d[0] <= now]
            if not due:
                return
            self._deferred = [d for d in self._deferred if d[0] > now]
        for _, root, error in due:
            self._sweep(root, error)

    def _sweep(self, root: Run, error: BaseException | Failure | None) -> None:
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
            if orphan.call is not None:
                self._settle_model(orphan, None, error, abandoned=True)
            self._close(orphan, error, abandoned=True)

    # -- chains, tools, retrievers ---------------------------------------------------------

    def _settle_model(self, run: Run, response: Any, error: BaseException | Failure | None, *, abandoned: bool = False) -> None:
        raise NotImplementedError  # models.ModelCallbacks


def _release_context(run_id: UUID) -> None:
    """Take a run's context off now, in the caller's context (see async_manager)."""
    key = run_id.int
    handler = CLAIMS.get(key)
    if handler is None:
        return
    run = handler._runs.get(key)
    if run is not None and not run.dupes and run.token is not None and run.ctx is not None:
        token, run.token = run.token, None
        ctxs.detach(run.ctx, token)

