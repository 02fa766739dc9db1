"""Embedding spans for LangChain, which sends no callbacks for embeddings.

`instrument_langchain()` wraps embed_documents / embed_query / aembed_documents / aembed_query
where each concrete `langchain_core.embeddings.Embeddings` subclass defines them (classes that
exist now, and, through an `__init_subclass__` hook, classes defined later), and undoes it on
uninstrument. A call becomes an `embeddings {model}` span (CLIENT) under the current context,
attributed like the run it happens in.

Tokens come from the provider where the client exposes them: while instrumented, the OpenAI
SDK's embeddings `create` reports `usage.prompt_tokens` to the embedding call around it (that is
what OpenAIEmbeddings and Azure use). Otherwise they are counted with tokentrail.tokens and the
span is flagged `tokentrail.usage.estimated`.
"""

from __future__ import annotations

import functools
import inspect
import sys
import threading
from collections.abc import Callable, Sequence
from contextvars import ContextVar, Token
from typing import Any

from opentelemetry.trace import Span, SpanKind

from ... import _internal, tokens
from ... import context as attribution_context
from ... import semconv as sc
from ...errors import BudgetExceeded
from ...providers import infer_provider
from ...usage import Usage
from .. import common, seams, spans
from ..lifecycle import ModelCall
from .otel_context import current_run_attribution, live_current

__all__ = ["EmbeddingCall", "patch_embeddings", "unpatch_embeddings"]

FRAMEWORK = "langchain"
_METHODS = ("embed_documents", "embed_query", "aembed_documents", "aembed_query")
_MODEL_ATTRS = ("model", "model_name", "model_id", "deployment", "deployment_name", "azure_deployment")
_MARK = "__tokentrail_wrapped__"

# The embedding call in progress in this context: nested calls (embed_query calling
# embed_documents, a subclass calling super()) belong to it, and the OpenAI SDK reports to it.
_ACTIVE: ContextVar[EmbeddingCall | None] = ContextVar("tokentrail_embedding_call", default=None)


def _model_of(obj: Any) -> str | None:
    for attr in _MODEL_ATTRS:
        v = getattr(obj, attr, None)
        if isinstance(v, str) and v:
            return v
    return None


class EmbeddingCall:
    """One embeddings request: its span, the tokens the provider reported, its reservation."""

    __slots__ = ("call", "model", "provider", "reported_tokens", "response_model", "rt", "span", "texts")

    def __init__(self, instance: Any, texts: Sequence[str]) -> None:
        rt = seams.current()
        self.rt = rt
        self.model = _model_of(instance)
        self.provider = infer_provider(self.model, class_name=type(instance).__name__)
        self.texts = texts
        self.reported_tokens: int | None = None
        self.response_model: str | None = None
        attribution = current_run_attribution()
        if attribution is None:
            attribution = rt.defaults.merged(attribution_context.current())
        attrs = common.start_attributes(
            operation=sc.OP_EMBEDDINGS,
            framework=FRAMEWORK,
            attribution=attribution,
            provider=self.provider,
            request_model=self.model,
        )
        start_ns = rt.now_ns()
        self.span: Span = spans.start(
            rt, common.span_name(sc.OP_EMBEDDINGS, self.model), live_current(), SpanKind.CLIENT, attrs, start_ns
        )
        self.call = ModelCall(rt, self.span, attribution, self.model, self.provider, start_ns)
        if rt.budgets is not None:
            try:
                self.call.reserve(self._counted(bound=True), 0)
            except BaseException as e:  # recorded on the span, then re-raised
                common.record_error(self.span, e)
                self.span.end(end_time=rt.now_ns())
                raise

    def _counted(self, *, bound: bool = False) -> int:
        return sum(tokens.count_tokens(t, self.model, bound=bound) for t in self.texts if isinstance(t, str))

    def report(self, response: Any) -> None:
        """Called by the patched provider SDK with its response."""
        usage = getattr(response, "usage", None)
        n = getattr(usage, "prompt_tokens", None)
        if isinstance(n, int):
            self.reported_tokens = (self.reported_tokens or 0) + n
        model = getattr(response, "model", None)
        if isinstance(model, str) and model:
            self.response_model = model

    def finish(self, error: BaseException | None = None) -> None:
        reported = Usage(input_tokens=self.reported_tokens) if self.reported_tokens is not None else None
        # failed before the provider answered: nothing billed (the lifecycle's usage rule)
        usage = self.call.usage_or_estimate(reported, lambda: Usage(input_tokens=self._counted(), estimated=True), error=error)
        try:
            self.call.finish(usage, response_model=self.response_model)
        finally:
            if error is not None:
                common.record_error(self.span, error)
            self.span.end(end_time=self.rt.now_ns())


def _texts(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Sequence[str]:
    if method.endswith("query"):
        text = args[0] if args else kwargs.get("text", "")
        return [text] if isinstance(text, str) else []
    texts = args[0] if args else kwargs.get("texts", [])
    return texts if isinstance(texts, Sequence) else list(texts)


def _begin(instance: Any, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> EmbeddingCall | None:
    if not _state.openai:
        _patch_openai()
    try:
        return EmbeddingCall(instance, _texts(method, args, kwargs))
    except BudgetExceeded:
        raise
    except Exception as e:
        _internal.handle_internal_error("starting an embeddings span", e)
        return None


def _end(call: EmbeddingCall, error: BaseException | None) -> None:
    with _internal.internal_errors("embeddings span"):
        call.finish(error)


def _enter(instance: Any, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[EmbeddingCall, Token[Any]] | None:
    """The embeddings call to record around `method` (None: not this one, or it could not start)."""
    if _ACTIVE.get() is not None or not _state.enabled:
        return None
    call = _begin(instance, method, args, kwargs)
    return (call, _ACTIVE.set(call)) if call is not None else None


class _Recording:
    """`with _Recording(...)`: the embeddings call around one method call, if it is one to
    record; it ends with the method (and with its exception)."""

    __slots__ = ("entered",)

    def __init__(self, instance: Any, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.entered = _enter(instance, method, args, kwargs)

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, error: BaseException | None, tb: Any) -> None:
        if self.entered is not None:
            call, token = self.entered
            _ACTIVE.reset(token)
            _end(call, error)


def _wrap(method: str, original: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def awrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            with _Recording(self, method, args, kwargs):
                return await original(self, *args, **kwargs)

        setattr(awrapper, _MARK, original)
        return awrapper

    @functools.wraps(original)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _Recording(self, method, args, kwargs):
            return original(self, *args, **kwargs)

    setattr(wrapper, _MARK, original)
    return wrapper


# -- the OpenAI SDK reports usage to the call around it --------------------------------------


def _report(response: Any) -> None:
    call = _ACTIVE.get()
    if call is not None:
        with _internal.internal_errors("embeddings usage"):
            call.report(response)


def _wrap_openai_create(original: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def acreate(*args: Any, **kwargs: Any) -> Any:
            response = await original(*args, **kwargs)
            _report(response)
            return response

        setattr(acreate, _MARK, original)
        return acreate

    @functools.wraps(original)
    def create(*args: Any, **kwargs: Any) -> Any:
        response = original(*args, **kwargs)
        _report(response)
        return response

    setattr(create, _MARK, original)
    return create


# -- patching --------------------------------------------------------------------------------


class _State:
    def __init__(self) -> None:
        self.enabled = False
        self.patched: list[tuple[type, str, Any]] = []  # (class, method, original)
        self.hooked = False
        self.openai = False  # the OpenAI SDK's create is wrapped
        self.lock = threading.RLock()


_state = _State()


def _patch_class(cls: type) -> None:
    for name in _METHODS:
        original = cls.__dict__.get(name)
        if original is None or not callable(original) or getattr(original, _MARK, None) is not None:
            continue
        if getattr(original, "__isabstractmethod__", False):
            continue
        setattr(cls, name, _wrap(name, original))
        _state.patched.append((cls, name, original))


def _all_subclasses(base: type) -> list[type]:
    seen: list[type] = []
    stack: list[type] = list(base.__subclasses__())
    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return seen


def _init_subclass_hook(cls: type, **kwargs: Any) -> None:
    # classes defined while instrumented are wrapped as they are created
    with _internal.internal_errors("wrapping an Embeddings subclass"):
        with _state.lock:
            if _state.enabled:
                _patch_class(cls)


def patch_embeddings() -> None:
    """Wrap every Embeddings subclass (and the OpenAI SDK's embeddings.create). Idempotent."""
    from langchain_core.embeddings import Embeddings

    with _state.lock:
        if _state.enabled:
            return
        _state.enabled = True
        for cls in _all_subclasses(Embeddings):
            _patch_class(cls)
        if "__init_subclass__" not in Embeddings.__dict__:
            Embeddings.__init_subclass__ = classmethod(_init_subclass_hook)  # type: ignore[assignment]
            _state.hooked = True
        _patch_openai()


def _patch_openai() -> None:
    """Wrap the OpenAI SDK's embeddings.create once the SDK is loaded: never import it here
    (importing openai takes seconds); an embeddings call checks again before it runs."""
    oai = sys.modules.get("openai.resources.embeddings")
    if oai is None:
        return
    with _state.lock:
        if _state.openai or not _state.enabled:
            return
        _state.openai = True
        for cls in (getattr(oai, "Embeddings", None), getattr(oai, "AsyncEmbeddings", None)):
            original = cls.__dict__.get("create") if cls is not None else None
            if cls is not None and original is not None and getattr(original, _MARK, None) is None:
                cls.create = _wrap_openai_create(original)
                _state.patched.append((cls, "create", original))


def unpatch_embeddings() -> None:
    """Put every original method back."""
    from langchain_core.embeddings import Embeddings

    with _state.lock:
        if not _state.enabled:
            return
        _state.enabled = False
        for cls, name, original in reversed(_state.patched):
            setattr(cls, name, original)
        _state.patched.clear()
        _state.openai = False
        if _state.hooked:
            del Embeddings.__init_subclass__  # type: ignore[misc]
            _state.hooked = False
