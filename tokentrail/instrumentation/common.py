"""What every integration does the same way: span names, usage and cost attributes, errors.

LangChain and LlamaIndex hooks both call these, so a span means the same whichever made it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry.trace import Span, Status, StatusCode

from .. import clock
from .. import semconv as sc
from ..context import Attribution
from ..interop import genai_cost
from ..pricing import Cost
from ..usage import Usage, usage_attributes
from .seams import PriceSource, Recorder
from .spans import set_trusted

if TYPE_CHECKING:
    from ..budgets.manager import Reservation

MODEL_OPERATIONS = (sc.OP_CHAT, sc.OP_TEXT_COMPLETION, sc.OP_EMBEDDINGS)


def span_name(operation: str, target: str | None) -> str:
    """`{operation} {model}` for model calls, `execute_tool {name}` etc. (OTel GenAI)."""
    return f"{operation} {target}" if target else operation


def start_attributes(
    *,
    operation: str,
    framework: str,
    attribution: Attribution,
    provider: str | None = None,
    request_model: str | None = None,
) -> dict[str, Any]:
    attrs: dict[str, Any] = {sc.GEN_AI_OPERATION_NAME: operation, sc.FRAMEWORK: framework}
    if provider:
        attrs[sc.GEN_AI_PROVIDER_NAME] = provider
    if request_model:
        attrs[sc.GEN_AI_REQUEST_MODEL] = request_model
    for key, value in attribution.span_attributes().items():
        attrs[key] = tuple(value) if isinstance(value, list) else value  # as the SDK keeps them
    return attrs


def cost_attributes(cost: Cost) -> dict[str, Any]:
    attrs: dict[str, Any] = {sc.COST_STATUS: cost.status}
    # Decimal strings: OTel has no decimal type and a float would lose nano-dollars
    if cost.total_usd is not None:
        attrs[sc.COST_USD] = format(cost.total_usd, "f")
    if cost.input_usd is not None:
        attrs[sc.COST_INPUT_USD] = format(cost.input_usd, "f")
    if cost.output_usd is not None:
        attrs[sc.COST_OUTPUT_USD] = format(cost.output_usd, "f")
    if cost.fees_usd:
        attrs[sc.COST_FEES_USD] = format(cost.fees_usd, "f")
    if cost.price_id:  # which price was used (issue 14): the as-charged ledger
        attrs[sc.PRICE_ID] = cost.price_id
        attrs[sc.PRICE_VERSION] = cost.price_version
    attrs.update(genai_cost.attributes(cost.total_usd))  # what other backends read
    return attrs


def record_usage(
    span: Span,
    prices: PriceSource,
    usage: Usage | None,
    *,
    model: str | None,
    provider: str | None,
    when: datetime | None = None,
    response_model: str | None = None,
) -> Cost:
    """Set usage and cost on a model-call span; return the cost (for budgets)."""
    priced_model = response_model or model
    when = when or clock.now()
    cost = prices.cost(usage, priced_model, provider, when)
    if cost.status == sc.COST_UNPRICED and response_model and model and response_model != model:
        # a dated response model may be unknown where the requested alias is known
        cost = prices.cost(usage, model, provider, when)
    attrs: dict[str, Any] = {}
    if usage is not None:
        attrs.update(usage_attributes(usage))
    if response_model:
        attrs[sc.GEN_AI_RESPONSE_MODEL] = response_model
    attrs.update(cost_attributes(cost))
    set_trusted(span, attrs)
    return cost


def record_error(span: Span, error: BaseException) -> None:
    span.set_attribute(sc.ERROR_TYPE, type(error).__qualname__)
    span.set_status(Status(StatusCode.ERROR, str(error)[:500]))
    span.record_exception(error)


# -- budgets -------------------------------------------------------------------------------
# The integrations reserve and settle through lifecycle.ModelCall (the reservation rule is
# there). These are the same calls for code that drives the budget manager as an integration
# would (the budget tests):
#   manager.reserve(attribution, model=, provider=, prompt_tokens=, max_output_tokens=) -> reservation | None
#     (raises BudgetExceeded for a blocking budget; None when no budget matches)
#   manager.settle(reservation, cost: Cost)   after the call, with the real cost
#   manager.release(reservation)              when the call has no usage


def budget_reserve(
    runtime: Recorder,
    attribution: Attribution,
    *,
    model: str | None,
    provider: str | None,
    prompt_tokens: int,
    max_output_tokens: int | None,
) -> Reservation | None:
    manager = runtime.budgets
    if manager is None:
        return None
    return manager.reserve(
        attribution,
        model=model,
        provider=provider,
        prompt_tokens=prompt_tokens,
        max_output_tokens=max_output_tokens,
    )


def budget_settle(runtime: Recorder, reservation: Reservation | None, cost: Cost) -> None:
    if reservation is not None and runtime.budgets is not None:
        runtime.budgets.settle(reservation, cost)


def budget_release(runtime: Recorder, reservation: Reservation | None) -> None:
    if reservation is not None and runtime.budgets is not None:
        runtime.budgets.release(reservation)


# -- undo handles ----------------------------------------------------------------------------


class InstrumentationHandle:
    """What `instrument_*()` returns: `.uninstrument()` (or `.undo()`, calling it, or leaving its
    `with` block) undoes this handle, once. The integration counts handles and is removed when
    the last one is undone, so a `with` block inside an instrumented program changes nothing."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release = release
        self._active = True
        self._undo_lock = threading.Lock()

    @property
    def active(self) -> bool:
        return self._active

    def uninstrument(self) -> None:
        with self._undo_lock:
            if not self._active:
                return
            self._active = False
        self._release()

    undo = uninstrument
    __call__ = uninstrument

    def __enter__(self: _H) -> _H:
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstrument()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} active={self._active}>"


_H = TypeVar("_H", bound=InstrumentationHandle)
