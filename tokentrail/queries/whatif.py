"""The same chat traffic re-priced on another model (the Efficiency page's what-if), in SQL over
`tokentrail.prices` where it can (queries/reprice.py), else by the rate book."""


from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from .. import semconv as sc
from ..store import Store
from ..store.schema import ROLLUP_TIERS
from .filters import Filters, Where, _utc
from .rates import (
    SLOT_SQL,
    TOKEN_SUMS,
    RateBook,
    decimal_context,
    price_book,
    tiers,
    varies_within_day,
)
from .source import METRIC_DIMS, facts

# Chat-like calls: the traffic a "what would another model cost" question re-prices
# (embeddings are not interchangeable with a chat model).
CHAT_OPERATIONS: tuple[str, ...] = (sc.OP_CHAT, sc.OP_TEXT_COMPLETION, "generate_content")


@dataclass(frozen=True)
class WhatIfRow:
    model: str
    provider: str
    calls: int
    actual_usd: Decimal
    what_if_usd: Decimal | None


@dataclass(frozen=True)
class WhatIf:
    """The same chat traffic (calls with a known cost) re-priced on `model`. what_if_usd is
    None when that model has no price; skipped_calls had no cost to compare with."""

    model: str
    provider: str | None
    calls: int
    actual_usd: Decimal
    what_if_usd: Decimal | None
    by_model: list[WhatIfRow]
    skipped_calls: int

    @property
    def difference_usd(self) -> Decimal | None:
        return None if self.what_if_usd is None else self.what_if_usd - self.actual_usd


def what_if(
    store: Store,
    filters: Filters | None,
    model: str,
    provider: str | None = None,
    *,
    prices: Any = None,
    now: datetime | None = None,
) -> WhatIf:
    """What the filtered chat calls would have cost on `model` (at each call's day's price,
    tokens as they were: a different model would tokenize differently; this is the estimate
    every cost calculator makes). Priced in SQL on the sums, joining tokentrail.prices
    (reprice.what_if_sql: `tokentrail reprice`'s arithmetic), except for a model priced by time
    of day, which the price table holds at 00:00 UTC only: per half hour with PriceBook."""
    prices = prices if prices is not None else price_book(store.settings.prices)
    if varies_within_day(prices, model, provider):
        return _what_if_by_half_hour(store, filters, model, provider, prices=prices, now=now)
    from ..clock import now as clock_now
    from ..pricing.ids import price_key
    from ..usage import Usage
    from .reprice import ensure_prices, what_if_sql

    at = now or clock_now()
    target = prices.cost(Usage(1000, 100), model, provider or None, at)
    priced = target.status in (sc.COST_PRICED, sc.COST_OVERRIDE) and bool(target.price_id)
    try:
        versions = ensure_prices(store, prices, at)
    except Exception:  # not a telemetry path: a read-only user (a dashboard's may be) cannot store prices not synced yet; PriceBook gives the same dollars
        return _what_if_by_half_hour(store, filters, model, provider, prices=prices, now=now)
    _, tiered = tiers()
    src = _chat_facts(store, filters, now, tiered)
    floor = (
        f"[0, {', '.join(str(t + 1) for t in ROLLUP_TIERS)}][input_tier + 1]"
        if tiered
        else "input_tokens"
    )
    key = price_key(target.price_id if priced else "")
    rows = store.rows(
        what_if_sql(src.sql, store.table("prices"), floor, {c: f"wi_{c}" for c in key}),
        {**src.params, "wi_versions": versions, **{f"wi_{c}": v for c, v in key.items()}},
    )
    groups: dict[tuple[str, str], list[Any]] = {}
    unknown = not priced
    skipped = 0
    for req, prov, known, calls, actual, what, no_price in rows:
        if not known:  # no actual cost to compare with
            skipped += int(calls)
            continue
        groups[(str(req), str(prov))] = [int(calls), Decimal(actual or 0), Decimal(what)]
        unknown = unknown or int(no_price) > 0
    return _what_if_result(model, provider, groups, unknown, skipped)


def _chat_facts(
    store: Store, filters: Filters | None, now: datetime | None, tiered: bool, grain: int = 86400
) -> Any:
    return facts(
        store,
        filters,
        now=now,
        need=("request_model", "provider", "input_tier", "operation", *METRIC_DIMS),
        conditions=Where("operation IN {wi_ops:Array(String)}", {"wi_ops": list(CHAT_OPERATIONS)}),
        grain=grain,
        raw=not tiered,
    )


def _what_if_result(
    model: str,
    provider: str | None,
    groups: dict[tuple[str, str], list[Any]],
    unknown: bool,
    skipped: int,
) -> WhatIf:
    by_model = sorted(
        (WhatIfRow(m, p, c, a, None if unknown else w) for (m, p), (c, a, w) in groups.items()),
        key=lambda r: (-r.actual_usd, r.model, r.provider),
    )
    return WhatIf(
        model=model,
        provider=provider,
        calls=sum(r.calls for r in by_model),
        actual_usd=sum((r.actual_usd for r in by_model), Decimal(0)),
        what_if_usd=None
        if unknown
        else sum((r.what_if_usd or Decimal(0) for r in by_model), Decimal(0)),
        by_model=by_model,
        skipped_calls=skipped,
    )


def _what_if_by_half_hour(
    store: Store,
    filters: Filters | None,
    model: str,
    provider: str | None,
    *,
    prices: Any,
    now: datetime | None,
) -> WhatIf:
    """A target priced by time of day (DeepSeek's off-peak hours): sums per half hour, each
    priced with the rates PriceBook gives for a call of that slot and tier bucket."""
    tier_sql, tiered = tiers()
    src = _chat_facts(store, filters, now, tiered, grain=1800)
    rows = store.rows(
        f"SELECT request_model, provider, {SLOT_SQL} AS t, {tier_sql} AS b, has_cost AS known, "
        f"sum(spans), sum(cost_usd), {TOKEN_SUMS} FROM {src.sql} "
        "GROUP BY request_model, provider, t, b, known",
        src.params,
    )
    book = RateBook(prices)
    groups: dict[tuple[str, str], list[Any]] = {}
    unknown = False
    skipped = 0
    with decimal_context():
        for (
            req,
            prov,
            t,
            b,
            known,
            calls,
            actual,
            uncached,
            cache_read,
            cache_write,
            output,
            reasoning,
        ) in rows:
            if not known:
                skipped += int(calls)
                continue
            acc = groups.setdefault((str(req), str(prov)), [0, Decimal(0), Decimal(0)])
            acc[0] += int(calls)
            acc[1] += Decimal(actual or 0)
            rates = book.rates(model, provider or "", _utc(t), int(b))
            if rates is None:
                unknown = True
                continue
            acc[2] += rates.cost(
                int(calls),
                int(uncached),
                int(cache_read),
                int(cache_write),
                int(output),
                int(reasoning),
            )
    return _what_if_result(model, provider, groups, unknown, skipped)


# genai-prices providers offered first as "what would it cost on..." targets
WHAT_IF_PROVIDERS: tuple[str, ...] = (
    "openai",
    "anthropic",
    "google",
    "mistral",
    "deepseek",
    "x-ai",
    "groq",
    "aws",
)


def what_if_models(prices: Any = None) -> list[tuple[str, str | None]]:
    """(model, provider) choices: price overrides first, then the chat models genai-prices
    knows for the main providers (provider = its genai-prices id)."""
    from genai_prices.data import providers

    out: list[tuple[str, str | None]] = [
        (m, None) for m in sorted(getattr(prices, "overrides", {}) or {})
    ]
    by_id = {p.id: p for p in providers}
    for pid in WHAT_IF_PROVIDERS:
        p = by_id.get(pid)
        if p is None:
            continue
        for m in sorted(p.models, key=lambda m: m.id):
            if "embed" in m.id or "tts" in m.id or "whisper" in m.id or "image" in m.id:
                continue
            out.append((m.id, pid))
    return out
