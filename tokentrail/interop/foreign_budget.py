"""Budgets for foreign model calls: reserve when the span starts, settle when it ends.

Only where it is known to work. A reservation needs the model (and provider) on the span's
start, and a block needs the instrumentation to call `start_span` where an exception from a
span processor reaches the caller before the provider is called, and leaves the
instrumentation working. Checked with the real packages (tests/test_interop_budgets.py):

- opentelemetry-instrumentation-openai-v2 (its default conventions): the request's attributes
  (`gen_ai.operation.name`, `gen_ai.request.model`, `gen_ai.system`, `gen_ai.request.max_tokens`)
  are on the start; `start_as_current_span` is entered before the client is called and outside
  its try, so BudgetExceeded reaches the caller and no request is sent. It can block.
- openai-v2 with OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental,
  openinference-instrumentation-langchain / -llama-index, OpenLLMetry's
  opentelemetry-instrumentation-langchain: spans start with no model (attributes are set later,
  or at the end), and they start spans inside LangChain / LlamaIndex callbacks or their own
  `dont_throw` wrappers, which swallow what is raised. They only account: their rows count in
  budgets' spend once written (the store's figure), never a block.

The estimate: the span start has no prompt, so the reservation is the request's max output
tokens (else the budget's cap, else 4096) at the model's output price, with 0 prompt tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import context as attribution_ctx
from .. import semconv as sc
from . import normalise as nz

__all__ = ["BLOCKING_SCOPES", "start_request"]

# instrumentation scopes whose span start can carry a block to the caller (see above)
BLOCKING_SCOPES = frozenset({"opentelemetry.instrumentation.openai_v2"})
_START_MODEL_OPS = frozenset({sc.OP_CHAT, sc.OP_TEXT_COMPLETION, sc.OP_EMBEDDINGS})


def start_request(scope_name: str, attrs: Mapping[str, Any]) -> tuple[str, str | None, int | None] | None:
    """(model, provider, max output tokens) when a span start carries enough to reserve."""
    if scope_name not in BLOCKING_SCOPES:
        return None
    if attrs.get(sc.GEN_AI_OPERATION_NAME) not in _START_MODEL_OPS:
        return None
    model = attrs.get(sc.GEN_AI_REQUEST_MODEL)
    if not model or not isinstance(model, str):
        return None
    max_out = attrs.get(sc.GEN_AI_REQUEST_MAX_TOKENS)
    return model, nz.provider(attrs), max_out if type(max_out) is int and max_out > 0 else None


def attribution(rt: Any, ctx: Any, attrs: Mapping[str, Any]) -> Any:
    """Who the call is for, as tokentrail's hooks would say: defaults, the context's
    `tokentrail.attributes()`, the span's own user and session."""
    who = rt.defaults
    if ctx is not None and ctx is not attribution_ctx.EMPTY:
        who = who.merged(ctx)
    own = nz.attribution(attrs)
    if own:
        who = who.merged(attribution_ctx.Attribution(user_id=own.get("user_id", ""), session_id=own.get("session_id", "")))
    return who


def reserve(rt: Any, gate: Any, ctx: Any, attrs: Mapping[str, Any], request: tuple[str, str | None, int | None]) -> Any:
    """A reservation (or None); raises BudgetExceeded for a blocking budget."""
    model, provider, max_out = request
    return gate.reserve(attribution(rt, ctx, attrs), model=model, provider=provider, prompt_tokens=0, max_output_tokens=max_out)


def blocked(span: Any, error: BaseException) -> None:
    """The provider is not called: the instrumentation will not end its span, so it ends here,
    with the error on it (as tokentrail's hooks record a blocked call)."""
    from ..instrumentation.common import record_error

    record_error(span, error)
    span.end()
