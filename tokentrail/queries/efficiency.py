"""Efficiency: cache savings, estimated usage, cost of errors, and the same traffic re-priced on another model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from .. import semconv as sc
from ..store import Store
from ..store.schema import ROLLUP_TIERS
from .filters import Filters, Where, _utc
from .source import COST, METRIC_DIMS, facts
from .spend import _METRICS, ReportRow, _totals_from, model_call_facts

# Chat-like calls: the traffic a "what would another model cost" question re-prices
# (embeddings are not interchangeable with a chat model).
CHAT_OPERATIONS: tuple[str, ...] = (sc.OP_CHAT, sc.OP_TEXT_COMPLETION, "generate_content")


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


# Re-pricing traffic at another price (cache savings, another model) without a Python loop per
# call. Within one price tier and one day a call's cost is linear in its token counts, so the
# spans are summed per (model, day, tier bucket) in SQL and each sum is priced with per-token
# rates that PriceBook itself gives for a call of that bucket. Tier buckets come from every tier
# threshold in genai-prices (a cliff on total input tokens); prices that change within a day
# (off-peak hours) are bucketed per 30 minutes instead of per day.
@dataclass(frozen=True)
class _Rates:
    """What PriceBook charges for `per` tokens of each kind (plus `fee` per call)."""

    per: int
    fee: Decimal
    uncached: Decimal
    cache_read: Decimal
    cache_write: Decimal
    output: Decimal
    reasoning: Decimal

    def cost(
        self,
        calls: int,
        uncached: int,
        cache_read: int,
        cache_write: int,
        output: int,
        reasoning: int,
    ) -> Decimal:
        tokens = (
            uncached * self.uncached
            + cache_read * self.cache_read
            + cache_write * self.cache_write
            + (output - reasoning) * self.output
            + reasoning * self.reasoning
        )
        return calls * self.fee + tokens / self.per


def _decimal_context() -> Any:
    from decimal import Context, localcontext

    return localcontext(Context(prec=50))


def tier_thresholds() -> tuple[int, ...]:
    """Every input-token threshold at which some genai-prices price changes (cliffs)."""
    return _tier_thresholds()


def _tier_thresholds() -> tuple[int, ...]:
    global _TIERS
    if _TIERS is None:
        from genai_prices.data import providers
        from genai_prices.types import TieredPrices

        starts: set[int] = set()
        for p in providers:
            for m in p.models:
                for cp in m.prices if isinstance(m.prices, list) else [m.prices]:
                    for value in vars(getattr(cp, "prices", cp)).values():
                        if isinstance(value, TieredPrices):
                            starts.update(t.start for t in value.tiers)
        _TIERS = tuple(sorted(starts))
    return _TIERS


_TIERS: tuple[int, ...] | None = None


def _bucket_sql() -> str:
    return f"arrayCount(t -> input_tokens > t, [{', '.join(str(t) for t in _tier_thresholds()) or '0'}])"


def _tiers() -> tuple[str, bool]:
    """(SQL of a call's tier bucket over facts, whether it may come from a rollup).

    The rollups count ROLLUP_TIERS thresholds (`input_tier`); while every genai-prices threshold
    is one of them, a call's bucket is a function of its input_tier, computed here in SQL."""
    tiers = _tier_thresholds()
    if not set(tiers) <= set(ROLLUP_TIERS):
        return _bucket_sql(), False  # a new threshold: only the raw spans know each call's bucket
    # tier k (k ROLLUP_TIERS thresholds below the input) -> how many genai-prices thresholds are below it
    by_tier = [sum(1 for t in tiers if t <= lower) for lower in (0, *ROLLUP_TIERS)]
    return f"[{', '.join(map(str, by_tier))}][input_tier + 1]", True


def _bucket_tokens(bucket: int) -> int:
    """A call size inside tier bucket `bucket` (inputs above the bucket's threshold)."""
    tiers = _tier_thresholds()
    if bucket == 0:
        return min(1000, tiers[0]) if tiers else 1000
    return tiers[bucket - 1] + 1


def _varies_within_day(prices: Any, model: str, provider: str | None) -> bool:
    """True when genai-prices prices this model by time of day (off-peak hours)."""
    if prices.overrides and (
        model in prices.overrides or model.lower() in {k.lower() for k in prices.overrides}
    ):
        return False
    try:
        from genai_prices import Usage as GPUsage
        from genai_prices import calc_price
        from genai_prices.types import TimeOfDateConstraint

        from ..providers import genai_prices_provider_id

        pid = genai_prices_provider_id(provider) if provider else None
        info = calc_price(GPUsage(), model_ref=model, provider_id=pid).model
    except Exception:  # genai-prices has no plan for this model: no time-of-day price
        return False
    schedule = info.prices if isinstance(info.prices, list) else []
    return any(isinstance(getattr(c, "constraint", None), TimeOfDateConstraint) for c in schedule)


class _RateBook:
    """Memoised _Rates per (model, provider, time slot, tier bucket)."""

    def __init__(self, prices: Any) -> None:
        self.prices = prices
        self._memo: dict[tuple[str, str, datetime, int], _Rates | None] = {}
        self._tod: dict[tuple[str, str], bool] = {}

    def varies(self, model: str, provider: str) -> bool:
        """True when the model's price changes within a day (off-peak hours)."""
        key = (model, provider)
        tod = self._tod.get(key)
        if tod is None:
            tod = self._tod[key] = _varies_within_day(self.prices, model, provider)
        return tod

    def rates_at(self, model: str, provider: str, slot: datetime, bucket: int) -> _Rates | None:
        """Rates at a 30-minute slot: the slot's day's, unless the price varies within a day."""
        when = (
            slot
            if self.varies(model, provider)
            else slot.replace(hour=0, minute=0, second=0, microsecond=0)
        )
        return self.rates(model, provider, when, bucket)

    def rates(self, model: str, provider: str, when: datetime, bucket: int) -> _Rates | None:
        key = (model, provider, when, bucket)
        if key not in self._memo:
            self._memo[key] = self._compute(model, provider, when, bucket)
        return self._memo[key]

    def _compute(self, model: str, provider: str, when: datetime, bucket: int) -> _Rates | None:
        from ..usage import Usage

        n = _bucket_tokens(bucket)

        def total(**counts: Any) -> Decimal | None:  # token counts (ints)
            c = self.prices.cost(Usage(**counts), model, provider or None, when)
            return (
                None
                if c.total_usd is None or c.status not in (sc.COST_PRICED, sc.COST_OVERRIDE)
                else c.total_usd
            )

        fee = total()
        base = total(input_tokens=n)
        cache_read = total(input_tokens=n, cache_read_tokens=n)
        cache_write = total(input_tokens=n, cache_write_tokens=n)
        output = total(input_tokens=n, output_tokens=n)
        reasoning = total(input_tokens=n, output_tokens=n, reasoning_tokens=n)
        if None in (fee, base, cache_read, cache_write, output, reasoning):
            return None
        assert fee is not None and base is not None and cache_read is not None
        assert cache_write is not None and output is not None and reasoning is not None
        return _Rates(
            per=n,
            fee=fee,
            uncached=base - fee,
            cache_read=cache_read - fee,
            cache_write=cache_write - fee,
            output=output - base,
            reasoning=reasoning - base,
        )


_SLOT_SQL = "toStartOfInterval(timestamp, INTERVAL 30 MINUTE)"
_DAY_SQL = "toDateTime(toDate(timestamp), 'UTC')"
_TOKEN_SUMS = (
    "sum(uncached_input_tokens), sum(cache_read_tokens), sum(cache_write_tokens), "
    "sum(output_or_reasoning_tokens), sum(reasoning_tokens)"
)


_PRICE_BOOKS: dict[tuple[Any, ...], Any] = {}


def price_book(overrides: Mapping[str, Any] | None = None) -> Any:
    """A PriceBook shared by the questions with the same overrides: its per-day price plans
    stay warm across dashboard refreshes (a cold day costs a few ms per model)."""
    from ..pricing import PriceBook

    key = tuple(sorted((overrides or {}).items()))
    book = _PRICE_BOOKS.get(key)
    if book is None:
        if len(_PRICE_BOOKS) > 16:
            _PRICE_BOOKS.clear()
        book = _PRICE_BOOKS[key] = PriceBook(dict(overrides or {}))
    return book


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
    book = _RateBook(prices)
    tier_sql, tiered = _tiers()
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
    rows = scan(_DAY_SQL, 86400)
    tod = sorted(
        {
            str(r[1])
            for r in rows
            if book.varies(str(r[0]), str(r[2])) or book.varies(str(r[1]), str(r[2]))
        }
    )
    if tod:
        rows = [r for r in rows if str(r[1]) not in tod] + scan(
            _SLOT_SQL, 1800, Where("request_model IN {cs_tod:Array(String)}", {"cs_tod": tod})
        )
    saved: dict[tuple[str, str], list[Any]] = {}
    unpriced = 0
    with _decimal_context():
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
    if _varies_within_day(prices, model, provider):
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
    _, tiered = _tiers()
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
    tier_sql, tiered = _tiers()
    src = _chat_facts(store, filters, now, tiered, grain=1800)
    rows = store.rows(
        f"SELECT request_model, provider, {_SLOT_SQL} AS t, {tier_sql} AS b, has_cost AS known, "
        f"sum(spans), sum(cost_usd), {_TOKEN_SUMS} FROM {src.sql} "
        "GROUP BY request_model, provider, t, b, known",
        src.params,
    )
    book = _RateBook(prices)
    groups: dict[tuple[str, str], list[Any]] = {}
    unknown = False
    skipped = 0
    with _decimal_context():
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
