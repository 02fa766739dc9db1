"""Prices applied to summed usage: the rate book the cache savings and the what-if share (a
model's rates per token kind, its long-context tiers, prices that change within a day)."""


from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from .. import semconv as sc
from ..store.schema import ROLLUP_TIERS


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


def decimal_context() -> Any:
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


def tiers() -> tuple[str, bool]:
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


def varies_within_day(prices: Any, model: str, provider: str | None) -> bool:
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


class RateBook:
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
            tod = self._tod[key] = varies_within_day(self.prices, model, provider)
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


SLOT_SQL = "toStartOfInterval(timestamp, INTERVAL 30 MINUTE)"
DAY_SQL = "toDateTime(toDate(timestamp), 'UTC')"
TOKEN_SUMS = (
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
