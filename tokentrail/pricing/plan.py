"""genai-prices' arithmetic for one model's prices on one day, as a few plain terms.

A plan reproduces ModelPrice.calc_price for the counts our Usage has (same unit prices, same
tiers, same leaf counts, same Decimal operations as calc_unit_price), in a few µs; tests check it
equals calc_price for every model. Units our usage never reports (audio, images...) count 0 in
genai-prices too and are left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple

from ..usage import Usage

__all__ = ["Plan", "Tiers", "genai_usage", "make_plan", "plan_cost", "price_context"]

# genai-prices usage keys: its input_tokens includes cached tokens like ours, its
# output_reasoning_tokens is a part of output_tokens, cache_write_1h_tokens a part of
# cache_write_tokens; web searches and requests are counted apart.
INPUT, OUTPUT, CACHE_READ, CACHE_WRITE, CACHE_WRITE_1H, REASONING, WEB_SEARCHES, REQUESTS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_reasoning_tokens",
    "web_searches",
    "requests",
)
_OURS = frozenset({INPUT, OUTPUT, CACHE_READ, CACHE_WRITE, CACHE_WRITE_1H, REASONING, WEB_SEARCHES, REQUESTS})


def price_context(u: Usage) -> dict[str, str] | None:
    """genai-prices' price context for the tier a response reports: a batch is its
    ``processing``, the others (flex, priority) its ``service_tier``."""
    tier = u.service_tier
    if not tier or tier == "mixed":
        return None
    return {"processing": "batch"} if tier == "batch" else {"service_tier": tier}


def genai_usage(u: Usage) -> Any:
    """Our Usage as a genai_prices.Usage (what tests compare calc_price against)."""
    from genai_prices import Usage as GPUsage

    values: dict[str, int] = {
        "input_tokens": u.input_tokens,
        "cache_read_tokens": u.cache_read_tokens,
        "cache_write_tokens": u.cache_write_tokens,
        "output_tokens": u.output_tokens,
        "output_reasoning_tokens": u.reasoning_tokens,
    }
    if u.cache_write_1h_tokens:
        values["cache_write_1h_tokens"] = u.cache_write_1h_tokens
    if u.web_search_requests:
        values["web_searches"] = u.web_search_requests
    return GPUsage(**values)


@lru_cache(maxsize=1)
def units() -> Mapping[str, Any]:
    from genai_prices.data_units import unit_data

    return {u["price_key"]: (key, u) for key, u in unit_data.items()}


class Tiers(NamedTuple):
    """genai-prices' TieredPrices as plain values: the price is `base` until the call's input
    tokens exceed a tier's start, then that tier's price (the highest such tier)."""

    base: Decimal
    tiers: tuple[tuple[int, Decimal], ...]


@dataclass(frozen=True, slots=True)
class Plan:
    """terms: (usage key, direction, price, per); None when a price key is not a known unit or a
    price has a shape the plan cannot evaluate (then calc_price prices the call)."""

    terms: tuple[tuple[str, str, Any, int], ...] | None
    tiered: bool
    prices_cache_read: bool
    prices_cache_write: bool
    prices_reasoning: bool
    prices_cache_write_1h: bool = False
    price_id: str = ""  # the row of tokentrail.prices (table.py)


def make_plan(model_price: Any, price_id: str = "") -> Plan:
    from genai_prices.types import TieredPrices

    known_units = units()
    terms: list[tuple[str, str, Any, int]] = []
    keys: set[str] = set()
    known = True
    for price_key, price in vars(model_price).items():
        if price_key.startswith("_") or price is None:
            continue
        unit = known_units.get(price_key)
        if unit is None:
            known = False
            continue
        usage_key, spec = unit
        keys.add(usage_key)
        if usage_key in _OURS:
            direction = spec.get("dimensions", {}).get("direction", "")
            if isinstance(price, TieredPrices):
                price = Tiers(price.base, tuple((t.start, t.price) for t in price.tiers))
            elif not isinstance(price, Decimal):
                known = False  # a price shape this plan cannot evaluate: calc_price does
                continue
            terms.append((usage_key, direction, price, int(spec["per"])))
    return Plan(
        terms=tuple(terms) if known else None,
        tiered=any(isinstance(t[2], Tiers) for t in terms),
        prices_cache_read=CACHE_READ in keys,
        prices_cache_write=CACHE_WRITE in keys,
        prices_reasoning=REASONING in keys,
        prices_cache_write_1h=CACHE_WRITE_1H in keys,
        price_id=price_id,
    )


def plan_cost(plan: Plan, u: Usage) -> tuple[Decimal, Decimal, Decimal]:
    """genai-prices' arithmetic for our counts: each priced unit is charged for its leaf count
    (input minus the cache parts that have their own price, cache writes minus the one-hour
    part when that has its own price, output minus reasoning when reasoning has its own price),
    tiers chosen by total input tokens, price * count / per."""
    assert plan.terms is not None
    cache_read = u.cache_read_tokens if plan.prices_cache_read else 0
    cw_1h = min(u.cache_write_1h_tokens, u.cache_write_tokens) if plan.prices_cache_write_1h else 0
    cache_write = u.cache_write_tokens - cw_1h if plan.prices_cache_write else 0
    reasoning = u.reasoning_tokens if plan.prices_reasoning else 0
    counts = {
        INPUT: max(u.input_tokens - cache_read - cache_write - cw_1h, 0),
        CACHE_READ: cache_read,
        CACHE_WRITE: cache_write,
        CACHE_WRITE_1H: cw_1h,
        OUTPUT: max(u.output_tokens - reasoning, 0),
        REASONING: reasoning,
        WEB_SEARCHES: u.web_search_requests,
        REQUESTS: 1,
    }
    total_input = u.input_tokens if plan.tiered else 0
    inp = out = total = Decimal(0)
    for usage_key, direction, price, per in plan.terms:
        if type(price) is Tiers:
            applicable = price.base
            for start, tier_price in reversed(price.tiers):
                if total_input > start:
                    applicable = tier_price
                    break
            price = applicable
        # Decimal * int is exact, as Decimal * Decimal(int) in calc_unit_price
        value = price * counts[usage_key] / per
        total += value
        if direction == "input":
            inp += value
        elif direction == "output":
            out += value
    return inp, out, total
