"""Efficiency: cache savings, estimated usage, cost of errors, and the same traffic re-priced on another model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..store import Store
from .filters import Filters, Where, _utc
from .rates import DAY_SQL, SLOT_SQL, RateBook, decimal_context, price_book, tiers
from .source import COST
from .spend import _METRICS, ReportRow, _totals_from, model_call_facts


# -- efficiency -----------------------------------------------------------------------------
@dataclass(frozen=True)
class EstimatedShare:
    """How much of the usage a tokenizer counted because the provider reported none."""

    calls: int
    estimated_calls: int
    tokens: int
    estimated_tokens: int
    cost_usd: Decimal | None
    estimated_cost_usd: Decimal | None
    input_tokens: int = (
        0  # all of it (the Efficiency page's share read from cache needs no other query)
    )


def estimated_share(
    store: Store, filters: Filters | None = None, *, now: datetime | None = None
) -> EstimatedShare:
    src, params = model_call_facts(store, filters, now=now, need=("usage_estimated",))
    r = store.rows(
        "SELECT sum(spans), sumIf(spans, usage_estimated), sum(input_tokens) + sum(output_tokens), "
        f"sumIf(input_tokens, usage_estimated) + sumIf(output_tokens, usage_estimated), {COST}, "
        "if(sumIf(spans, usage_estimated AND has_cost) = 0, NULL, sumIf(cost_usd, usage_estimated)), sum(input_tokens) "
        f"FROM {src}",
        params,
    )[0]
    return EstimatedShare(
        calls=int(r[0]),
        estimated_calls=int(r[1]),
        tokens=int(r[2]),
        estimated_tokens=int(r[3]),
        cost_usd=None if r[4] is None else Decimal(r[4]),
        estimated_cost_usd=None if r[5] is None else Decimal(r[5]),
        input_tokens=int(r[6] or 0),
    )


def error_costs(
    store: Store, filters: Filters | None = None, *, now: datetime | None = None
) -> list[ReportRow]:
    """Model calls that failed, grouped by error type: what they cost anyway."""
    src, params = model_call_facts(
        store, filters, now=now, need=("error_type",), extra=Where("status = 'error'")
    )
    rows = store.rows(
        f"SELECT error_type AS key, {_METRICS} FROM {src} GROUP BY key ORDER BY cost_usd DESC NULLS LAST, calls DESC, key",
        params,
    )
    return [ReportRow(key=str(r[0]), **_totals_from(r[1:])) for r in rows]


@dataclass(frozen=True)
class CacheSavingsRow:
    model: str
    provider: str
    calls: int
    cache_read_tokens: int
    saved_usd: Decimal


@dataclass(frozen=True)
class CacheSavings:
    """What prompt caching saved: cache-read tokens re-priced at the uncached input price,
    minus what was paid for them. Calls without a price are left out (their tokens counted in
    unpriced_cache_read_tokens)."""

    cache_read_tokens: int
    saved_usd: Decimal
    by_model: list[CacheSavingsRow]
    unpriced_cache_read_tokens: int


# the model a call was priced with: the response model, else the requested one
_PRICED_MODEL = "if(response_model != '', response_model, request_model)"


def cache_savings(
    store: Store, filters: Filters | None = None, *, prices: Any = None, now: datetime | None = None
) -> CacheSavings:
    prices = prices if prices is not None else price_book(store.settings.prices)
    book = RateBook(prices)
    tier_sql, tiered = tiers()
    need = ("response_model", "request_model", "provider", "input_tier")

    def scan(slot: str, grain: int, extra: Where | None = None) -> list[tuple[Any, ...]]:
        src, params = model_call_facts(
            store, filters, now=now, need=need, extra=extra, grain=grain, raw=not tiered
        )
        return store.rows(
            f"SELECT {_PRICED_MODEL} AS m, request_model, provider, {slot} AS t, {tier_sql} AS b, "
            f"sum(cache_read_calls), sum(cache_read_tokens), has_cost AS priced FROM {src} "
            "GROUP BY m, request_model, provider, t, b, priced HAVING sum(cache_read_calls) > 0",
            params,
        )

    # a day at a time (PriceBook's own granularity, and what a rollup can give); the models
    # priced by time of day (off-peak hours) again from the spans, per 30 minutes
    rows = scan(DAY_SQL, 86400)
    tod = sorted(
        {
            str(r[1])
            for r in rows
            if book.varies(str(r[0]), str(r[2])) or book.varies(str(r[1]), str(r[2]))
        }
    )
    if tod:
        rows = [r for r in rows if str(r[1]) not in tod] + scan(
            SLOT_SQL, 1800, Where("request_model IN {cs_tod:Array(String)}", {"cs_tod": tod})
        )
    saved: dict[tuple[str, str], list[Any]] = {}
    unpriced = 0
    with decimal_context():
        for m, req, provider, t, b, calls, cache_read, priced in rows:
            if not priced:
                unpriced += int(cache_read)
                continue
            slot, bucket = _utc(t), int(b)
            rates = book.rates_at(str(m), str(provider), slot, bucket) or book.rates_at(
                str(req), str(provider), slot, bucket
            )
            if rates is None:
                unpriced += int(cache_read)
                continue
            acc = saved.setdefault((str(req), str(provider)), [0, 0, Decimal(0)])
            acc[0] += int(calls)
            acc[1] += int(cache_read)
            acc[2] += int(cache_read) * (rates.uncached - rates.cache_read) / rates.per
    by_model = sorted(
        (CacheSavingsRow(m, p, c, n, s) for (m, p), (c, n, s) in saved.items()),
        key=lambda r: (-r.saved_usd, r.model, r.provider),
    )
    return CacheSavings(
        cache_read_tokens=sum(r.cache_read_tokens for r in by_model),
        saved_usd=sum((r.saved_usd for r in by_model), Decimal(0)),
        by_model=by_model,
        unpriced_cache_read_tokens=unpriced,
    )
