"""A foreign model-call span as tokentrail's ledger sees it: the span tokentrail's own
processor writes to `tokentrail.spans` (usage normalised, priced at the span's start time,
attributed), and the cost a budget reservation settles with."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan

from .. import context as attribution_ctx
from .. import semconv as sc
from ..instrumentation.common import cost_attributes
from ..pricing import Cost
from ..usage import usage_attributes
from . import normalise as nz

__all__ = ["Attributions", "ledger_span"]


class Attributions:
    """The span attributes of (defaults, the context's attribution, the span's user/session),
    remembered: a process has few distinct ones, and merging costs more than the rest of a row."""

    _MAX = 1024

    def __init__(self) -> None:
        # keyed by identity; the value keeps the objects alive, so an id is never reused meanwhile
        self._memo: dict[tuple[int, int, str, str], tuple[Any, Any, dict[str, Any]]] = {}

    def get(self, defaults: Any, ctx: Any, own: Mapping[str, str]) -> dict[str, Any]:
        user, session = own.get("user_id", ""), own.get("session_id", "")
        key = (id(defaults), id(ctx), user, session)
        found = self._memo.get(key)
        if found is not None and found[0] is defaults and found[1] is ctx:
            return found[2]
        who = defaults
        if ctx is not None and ctx is not attribution_ctx.EMPTY:
            who = who.merged(ctx)
        if user or session:
            who = who.merged(attribution_ctx.Attribution(user_id=user, session_id=session))
        attrs = who.span_attributes()
        if len(self._memo) >= self._MAX:
            self._memo.clear()
        self._memo[key] = (defaults, ctx, attrs)
        return attrs


def price(rt: Any, attrs: Mapping[str, Any], fam: str, start_ns: int) -> tuple[Any, Cost, str | None, str | None, str | None]:
    """(usage, cost, provider, request model, response model) of a foreign span."""
    usage = nz.usage(attrs, fam)
    request_model, response_model = nz.models(attrs)
    provider = nz.provider(attrs)
    when = datetime.fromtimestamp(start_ns / 1e9, tz=timezone.utc)
    cost = rt.prices.cost(usage, response_model or request_model, provider, when)
    if cost.status == sc.COST_UNPRICED and request_model and response_model and request_model != response_model:
        cost = rt.prices.cost(usage, request_model, provider, when)  # a dated name may be unknown
    return usage, cost, provider, request_model, response_model


def ledger_span(
    rt: Any, span: ReadableSpan, attrs: Mapping[str, Any], fam: str, attribution: Any, memo: Attributions
) -> tuple[ReadableSpan, Cost]:
    usage, cost, provider, request_model, response_model = price(rt, attrs, fam, span.start_time or 0)
    out: dict[str, Any] = {sc.GEN_AI_OPERATION_NAME: nz.operation(attrs), sc.FRAMEWORK: fam}
    if provider:
        out[sc.GEN_AI_PROVIDER_NAME] = provider
    if request_model:
        out[sc.GEN_AI_REQUEST_MODEL] = request_model
    if response_model:
        out[sc.GEN_AI_RESPONSE_MODEL] = response_model
    out.update(memo.get(rt.defaults, attribution, nz.attribution(attrs)))
    if usage is not None:
        out.update(usage_attributes(usage))
    out.update(cost_attributes(cost))
    scope = span.instrumentation_scope
    if scope is not None:
        out["tokentrail.source.scope"] = scope.name
    if span.status.status_code is trace.StatusCode.ERROR:
        out[sc.ERROR_TYPE] = str(attrs.get(sc.ERROR_TYPE) or "_OTHER")
    row = ReadableSpan(
        name=span.name,
        context=span.get_span_context(),
        parent=span.parent,
        resource=span.resource,
        attributes=out,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=scope,
    )
    return row, cost
