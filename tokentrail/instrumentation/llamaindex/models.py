"""LlamaIndex model and embedding calls -> the shared model-call lifecycle.

A model span's start event reserves the call's worst case (lifecycle.ModelCall.reserve), its
progress events time the first token and carry stream usage, its end event (or, for an LLM that
sends no events, the span's exit) records usage and cost and settles by the lifecycle's rule.

Pitfalls handled here (each one bit a peer):
- a streamed call's span *exits* when the generator is returned, before a token arrived: the span
  stays open (`streaming`) until LLMChatEndEvent (usage is on its last chunk) or ExceptionEvent
  (closed early / failed), and a generator that is dropped unstarted ends it from a finalizer;
- nested model calls on one LLM (CustomLLM's `chat` -> `complete`) send two start/end pairs to the
  same span: only the outermost pair counts, so nothing is reserved or billed twice;
- the dispatcher swallows every exception a handler raises, BudgetExceeded included: the handler
  stashes it (`pending_block`) and the patched `Dispatcher.event` raises it in the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ... import semconv as sc
from ...errors import BudgetExceeded
from ...providers import infer_provider
from ...tokens import count_tokens
from ...usage import Usage, from_mapping
from .. import common
from . import readers
from .runs import Span, SpanBook, pending_block

__all__ = ["ModelSpans", "max_tokens_of", "model_of", "provider_of", "texts_of"]


def model_of(instance: Any) -> str | None:
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


def max_tokens_of(instance: Any) -> int | None:
    v = getattr(instance, "max_tokens", None)
    if isinstance(v, int) and not isinstance(v, bool) and v > 0:
        return v
    return None


def provider_of(model: str | None, instance: Any) -> str:
    return infer_provider(model, class_name=type(instance).__name__)


def texts_of(arguments: Any) -> list[str]:
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


class ModelSpans(SpanBook):
    """The model and embedding events of the span handler (called by events.py)."""

    # -- model calls -----------------------------------------------------------------------
    def on_model_start(self, s: Span, messages: Sequence[Any] | None, prompt: str | None, model_dict: Any) -> None:
        call = s.call
        assert call is not None
        s.depth += 1
        if s.depth > 1:
            return  # a nested call of the same LLM (chat -> complete): one call, counted once
        s.messages = messages
        s.prompt = prompt
        if s.capture:
            s.otel.set_attribute(sc.GEN_AI_INPUT_MESSAGES, readers.input_messages(messages, prompt))
        if call.model is None and isinstance(model_dict, dict):
            m = model_dict.get("model") or model_dict.get("model_name")
            if isinstance(m, str) and m and m != "unknown":
                call.model = m
                s.otel.update_name(common.span_name(s.operation, m))
                s.otel.set_attribute(sc.GEN_AI_REQUEST_MODEL, m)
        if s.rt.budgets is not None and call.reservation is None:
            try:
                call.reserve(readers.prompt_tokens(messages, prompt, call.model, bound=True), s.max_tokens)
            except BudgetExceeded as e:
                pending_block.set(e)
                raise

    def on_model_progress(self, s: Span, response: Any) -> None:
        call = s.call
        assert call is not None
        call.first_token()
        raw = getattr(response, "raw", None)
        if raw is not None:
            u = readers.raw_usage(raw, call.provider)
            if u is not None:
                s.stream_usage = readers.max_usage(s.stream_usage, u)
            if s.response_model is None:
                s.response_model = readers.raw_model(response)
        s.last_response = response

    def on_model_end(self, s: Span, response: Any) -> None:
        if s.depth > 0:
            s.depth -= 1
        if s.depth > 0 or (s.call is not None and s.call.done):
            return
        s.last_response = response
        self._record_model(s, response)
        if s.exited:
            self._end_stream(s)

    def on_model_exception(self, s: Span, error: BaseException) -> None:
        """A stream failed, or its consumer closed it early (GeneratorExit)."""
        if not s.exited or s.ended:
            return  # not a stream: prepare_to_drop_span follows
        if isinstance(error, GeneratorExit):
            # tokens were generated and billed up to the close: count what arrived
            s.otel.set_attribute(sc.ABANDONED, True)
            self._record_model(s, s.last_response)
        else:
            # billed if the provider had started answering (lifecycle's usage rule)
            self._record_model(s, s.last_response, error)
            common.record_error(s.otel, error)
        self._end_stream(s)

    def abandon(self, span_id: str) -> None:
        """A stream generator was garbage-collected without running: no request was sent."""
        with self.errors.guard("abandon"):
            s = self.streaming.get(span_id)
            if s is None or s.ended:
                return
            if s.call is not None and not s.call.done:
                s.otel.set_attribute(sc.ABANDONED, True)
                s.call.finish(None)  # no usage: the reservation is released
            self._end_stream(s)

    def _record_model(self, s: Span, response: Any, error: BaseException | None = None) -> None:
        call = s.call
        if call is None or call.done:
            return
        call.done = True  # once, even if reading the response fails (the span ends without usage)
        try:
            reported = readers.max_usage(readers.response_usage(response, call.provider), s.stream_usage)
            usage = call.usage_or_estimate(
                reported,
                # nothing to estimate from when neither a prompt nor a response was seen
                (lambda: readers.estimate(s.messages, s.prompt, readers.response_text(response), call.model))
                if response is not None or s.messages or s.prompt
                else None,
                error=error,
            )
        except BaseException:  # re-raised (the guard above logs it), the reservation given back first
            call.release()  # no reservation is held past its call
            raise
        call.finish(usage, response_model=readers.raw_model(response) or s.response_model)
        if s.capture and response is not None:
            s.otel.set_attribute(sc.GEN_AI_OUTPUT_MESSAGES, readers.output_messages(response))
        s.usage = usage

    def _finish_model(self, s: Span, result: Any) -> None:
        """At exit of a non-streamed model span. The end event normally recorded usage already;
        an LLM that sent no events still returned a response."""
        self._record_model(s, result if hasattr(result, "raw") else None)

    # -- embeddings ------------------------------------------------------------------------
    def on_embedding_start(self, s: Span) -> None:
        call = s.call
        if call is None or s.rt.budgets is None or call.reservation is not None or s.depth:
            return
        s.depth = 1  # reserve once per span, for every text it was given
        try:
            call.reserve(sum(count_tokens(t, call.model, bound=True) for t in texts_of(s.texts)), 0)
        except BudgetExceeded as e:
            pending_block.set(e)
            raise

    def on_embedding_end(self, s: Span, event: Any) -> None:
        reported = getattr(event, "usage", None)  # no LlamaIndex version sends it yet
        if reported is not None and s.call is not None:
            u = from_mapping(reported, s.call.provider)
            if u is not None:
                s.event_usage = u if s.event_usage is None else s.event_usage + u
                return
        chunks = getattr(event, "chunks", None)
        if chunks and s.chunks is not None:
            s.chunks.append(chunks)

    def _finish_embedding(self, s: Span) -> None:
        call = s.call
        if call is None or call.done:
            return
        usage = s.event_usage
        if usage is None and s.chunks:
            n = sum(count_tokens(t, call.model) for batch in s.chunks for t in batch if isinstance(t, str))
            usage = Usage(input_tokens=n, estimated=True)
        call.finish(usage)
        s.usage = usage
