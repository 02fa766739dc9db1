"""LangChain model runs (chat models and LLMs) -> the shared model-call lifecycle.

A model run's start reserves its worst case (lifecycle.ModelCall.reserve), its tokens time the
first one and are kept for an estimate, its end records usage and cost (the provider's, read by
readers.py, or an estimate) and settles the reservation by the lifecycle's rule. A call answered
from LangChain's LLM cache bills nothing and records what it saved.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any
from uuid import UUID

from opentelemetry.trace import SpanKind

from ... import _internal, tokens
from ... import semconv as sc
from ...pricing import Cost
from ...providers import infer_provider
from ...usage import Usage
from .. import common, lifecycle, spans
from ..lifecycle import ModelCall
from . import anthropic_stream, extract
from .readers import from_langchain_result
from .runs import Failure, Run, RunBook

__all__ = ["ModelCallbacks"]

_ZERO = Decimal("0E-9")
_CACHE_HIT_COST = Cost(_ZERO, _ZERO, _ZERO, sc.COST_PRICED, "langchain cache hit")


class ModelCallbacks(RunBook):
    """on_chat_model_start / on_llm_start / on_llm_new_token / on_llm_end / on_llm_error."""

    @_internal.swallow_errors
    def on_chat_model_start(self, serialized: dict[str, Any] | None, messages: list[list[Any]], *, run_id: UUID, **kwargs: Any) -> None:
        self._start_model(sc.OP_CHAT, serialized, run_id, kwargs, messages=messages[0] if messages else [])

    @_internal.swallow_errors
    def on_llm_start(self, serialized: dict[str, Any] | None, prompts: list[str], *, run_id: UUID, **kwargs: Any) -> None:
        self._start_model(sc.OP_TEXT_COMPLETION, serialized, run_id, kwargs, prompts=prompts)

    def _start_model(
        self,
        operation: str,
        serialized: Mapping[str, Any] | None,
        run_id: UUID,
        kwargs: Mapping[str, Any],
        *,
        messages: Sequence[Any] | None = None,
        prompts: Sequence[str] | None = None,
    ) -> None:
        parent_run_id, metadata = kwargs.get("parent_run_id"), kwargs.get("metadata")
        opened = self._open(run_id, parent_run_id, kwargs.get("tags"), metadata)
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
        if provider == "anthropic":
            anthropic_stream.ensure_patched()  # its stream chunks leave fees out
        run.model = model
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
        call = run.call = ModelCall(rt, span, run.attribution, model, provider, run.start_ns)
        if rt.budgets is not None:
            try:
                call.reserve(self._prompt_tokens(run, bound=True), max_out)
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
            call = run.call
            if run.batch == batch and call is not None and not call.first_token_ns and self._runs.pop(run.key, None) is not None:
                call.release()
                self._close(run, error)

    @staticmethod
    def _prompt_tokens(run: Run, *, bound: bool = False) -> int:
        """The prompt's tokens; bound=True (a reservation): an upper bound until the tokenizer
        has loaded, never a wait for it (see tokens.py). An exact count is kept for the
        estimate, should the provider report no usage."""
        if run.prompt_count >= 0:
            return run.prompt_count
        exact = not bound or tokens.counts_exactly(run.model)
        n = lifecycle.prompt_tokens(run.messages, run.prompts, run.model, bound=bound)
        if exact:
            run.prompt_count = n
        return n

    @_internal.swallow_errors
    def on_llm_new_token(self, token: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._runs.get(run_id.int)
        if run is None or not token or run.call is None:
            return
        if run.call.first_token():
            run.pieces = []
        # kept for an estimate if the stream is abandoned before its usage arrives
        run.pieces.append(token if isinstance(token, str) else tokens.text_of(token))  # type: ignore[union-attr]

    @_internal.swallow_errors
    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_model(run_id, response, None)

    @_internal.swallow_errors
    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._end_model(run_id, kwargs.get("response"), error)

    def _end_model(self, run_id: UUID, response: Any, error: BaseException | None) -> None:
        run = self._take(run_id)
        if run is None:
            return
        try:
            if run.call is not None:
                self._settle_model(run, response, error)
        finally:  # the span ends even if settling failed: a span never ended is a lost cost
            self._close(run, error)

    def _settle_model(self, run: Run, response: Any, error: BaseException | Failure | None, *, abandoned: bool = False) -> None:
        """Usage, cost and budget settlement of a model run that is ending."""
        call = run.call
        assert call is not None and run.span is not None
        if call.done:
            return
        fees = anthropic_stream.take(call.span) if call.provider == "anthropic" else None
        try:
            response_model = extract.response_model(response) if response is not None else None
            if response is not None and error is None and extract.is_cache_hit(response):
                self._cache_hit(call, response, response_model)
            else:
                usage = self._usage(run, response, error, abandoned)
                if usage is not None and fees is not None:
                    usage = fees.apply(usage)
                call.finish(usage, response_model=response_model)
        except BaseException:  # re-raised (the guard above logs it), the reservation given back first
            call.release()  # no reservation is held past its call (its span ends without usage)
            raise
        if response is not None and error is None and call.rt.settings.capture_content:
            call.span.set_attribute(sc.GEN_AI_OUTPUT_MESSAGES, extract.output_messages_json(response))

    @staticmethod
    def _cache_hit(call: ModelCall, response: Any, response_model: str | None) -> None:
        """Answered from LangChain's LLM cache: nothing was billed; what it saved is recorded."""
        attrs = call.ttft_attributes()
        attrs[sc.CACHE_HIT] = True
        saved = from_langchain_result(response)
        if saved is not None and not saved.is_empty:
            would = call.rt.prices.cost(saved, response_model or call.model, call.provider, lifecycle.when(call.start_ns))
            if would.total_usd is not None:
                attrs[sc.CACHE_HIT_SAVED_USD] = format(would.total_usd, "f")
        attrs.update(common.cost_attributes(_CACHE_HIT_COST))
        attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = 0
        attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = 0
        if response_model:
            attrs[sc.GEN_AI_RESPONSE_MODEL] = response_model
        spans.set_trusted(call.span, attrs)
        call.done = True
        call.settle(_CACHE_HIT_COST)

    def _usage(self, run: Run, response: Any, error: BaseException | Failure | None, abandoned: bool) -> Usage | None:
        usage = from_langchain_result(response) if response is not None else None
        if usage is not None and not usage.is_empty:
            return usage
        invalid = usage.invalid if usage is not None else ()  # the values dropped stay flagged
        llm_output = getattr(response, "llm_output", None)
        if error is None and isinstance(llm_output, Mapping) and "token_usage" in llm_output:
            # a batch's usage is reported once, on its first run: the others report {}
            return Usage(invalid=invalid)
        assert run.call is not None
        found = run.call.usage_or_estimate(None, lambda: self._estimate(run, response), error=error, ran=abandoned)
        return replace(found, invalid=invalid) if found is not None and invalid else found

    def _estimate(self, run: Run, response: Any) -> Usage:
        """Count with tokens.py when the provider sent no usage (fake models, cut streams)."""
        text = extract.generated_text(response) if response is not None else ""
        if not text and run.pieces:
            text = "".join(run.pieces)
        return lifecycle.estimate(self._prompt_tokens(run), text, run.model)
