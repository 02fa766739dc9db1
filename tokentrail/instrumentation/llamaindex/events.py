"""LlamaIndex events (LLMChatStartEvent, LLMChatEndEvent, EmbeddingEndEvent...) -> the span
they belong to: the event handler finds the emitted span by the event's span id and calls the
model and embedding steps of the span handler (models.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llama_index.core.instrumentation.event_handlers import BaseEventHandler

from ... import semconv as sc
from ...errors import BudgetExceeded
from .. import spans
from . import _classify as cl
from .models import ModelSpans
from .runs import Span

__all__ = ["TokentrailEventHandler"]


class TokentrailEventHandler(BaseEventHandler):
    """Feeds LlamaIndex events to the span they belong to."""

    spans: ModelSpans

    def __init__(self, span_handler: ModelSpans) -> None:
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

_EventFn = Callable[[ModelSpans, Span, Any], None]


def _llm_chat_start(h: ModelSpans, s: Span, e: Any) -> None:
    if s.kind == cl.K_LLM:
        h.on_model_start(s, e.messages, None, e.model_dict)


def _llm_completion_start(h: ModelSpans, s: Span, e: Any) -> None:
    if s.kind == cl.K_LLM:
        h.on_model_start(s, None, e.prompt, e.model_dict)


def _llm_progress(h: ModelSpans, s: Span, e: Any) -> None:
    if s.kind == cl.K_LLM:
        h.on_model_progress(s, e.response)


def _llm_end(h: ModelSpans, s: Span, e: Any) -> None:
    if s.kind == cl.K_LLM:
        h.on_model_end(s, e.response)


def _exception(h: ModelSpans, s: Span, e: Any) -> None:
    if s.kind == cl.K_LLM:
        h.on_model_exception(s, e.exception)


def _retrieval_end(h: ModelSpans, s: Span, e: Any) -> None:
    if s.kind == cl.K_RETRIEVER:
        nodes = getattr(e, "nodes", None)
        if nodes is not None:
            spans.set_trusted(s.otel, {sc.RETRIEVAL_DOCUMENTS: len(nodes)})


def _embedding_start(h: ModelSpans, s: Span, e: Any) -> None:
    if s.kind == cl.K_EMBEDDING:
        h.on_embedding_start(s)


def _embedding_end(h: ModelSpans, s: Span, e: Any) -> None:
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
