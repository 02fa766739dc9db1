"""`tokentrail prices MODEL`: the prices a model would be billed at, with tiers, conditions,
fees, the source and its version (what PriceBook.describe returns)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .. import semconv as sc
from ..providers import UNKNOWN
from .ids import STANDARD, genai_price_id, genai_version, override_price_id, period_start, tier_of

if TYPE_CHECKING:
    from .book import PriceBook

__all__ = ["describe"]

NAMES = {
    "input_mtok": "input_per_mtok",
    "output_mtok": "output_per_mtok",
    "cache_read_mtok": "cache_read_per_mtok",
    "cache_write_mtok": "cache_write_per_mtok",
    "cache_write_1h_mtok": "cache_write_1h_per_mtok",
    "output_reasoning_mtok": "reasoning_per_mtok",
}
FEES = {"web_searches_kcount": "web_search_per_k", "requests_kcount": "request_per_k"}


def _prices(model_price: Any) -> tuple[dict[str, Decimal], dict[str, list[tuple[int, Decimal]]], dict[str, Decimal]]:
    """(per-MTok prices and fees by our names, long-context tiers, other units)."""
    from genai_prices.types import TieredPrices

    prices: dict[str, Decimal] = {}
    tiers: dict[str, list[tuple[int, Decimal]]] = {}
    other: dict[str, Decimal] = {}
    for price_key, price in vars(model_price).items():
        if price_key.startswith("_") or price is None:
            continue
        base = price.base if isinstance(price, TieredPrices) else price
        name = NAMES.get(price_key) or FEES.get(price_key)
        if name is None:
            other[price_key] = base
            continue
        prices[name] = base
        if isinstance(price, TieredPrices):
            tiers[name] = [(t.start, t.price) for t in price.tiers]
    return prices, tiers, other


def describe(book: PriceBook, model: str, provider: str | None, when: datetime) -> dict[str, Any]:
    """Prices are USD per million tokens (Decimal); cache prices are the effective ones (the
    input price when the model has none); ``tiers``: (input tokens above, price) per price;
    ``fees``: USD per 1,000 web searches / requests; ``service_tiers``: the prices a response in
    that tier is billed at (genai-prices' price variants) and their conditions; ``other``: prices
    of units tokentrail does not count (audio, images...)."""
    out: dict[str, Any] = {
        "model": model,
        "provider": provider or UNKNOWN,
        "status": sc.COST_UNPRICED,
        "source": "",
        "version": "",
        "price_id": "",
        "matched_model": None,
        "matched_provider": None,
        "when": when.isoformat(),
        "input_per_mtok": None,
        "output_per_mtok": None,
        "cache_read_per_mtok": None,
        "cache_write_per_mtok": None,
        "cache_write_1h_per_mtok": None,
        "tiers": {},
        "fees": {},
        "service_tiers": {},
        "conditions": [],
        "other": {},
    }
    found = book.override(model)
    if found is not None:
        key, ov = found
        tier_overrides = {
            name.split("@", 1)[1]: {"input_per_mtok": o.input_per_mtok, "output_per_mtok": o.output_per_mtok}
            for name, o in book.overrides.items()
            if name.lower().startswith(key.lower() + "@")
        }
        fees = {k: v for k, v in (("web_search_per_k", ov.web_search_per_k), ("request_usd", ov.request_usd)) if v is not None}
        out.update(
            status=sc.COST_OVERRIDE,
            source=f"override {key}",
            version=book.overrides_version,
            price_id=override_price_id(key),
            matched_model=key,
            input_per_mtok=ov.input_per_mtok,
            output_per_mtok=ov.output_per_mtok,
            cache_read_per_mtok=ov.cache_read,
            cache_write_per_mtok=ov.cache_write,
            cache_write_1h_per_mtok=ov.cache_write_1h,
            fees=fees,
            service_tiers=tier_overrides,
            conditions=[f"GPU hour: {', '.join(f'{k}={v}' for k, v in ov.gpu)}"] if ov.gpu else [],
        )
        return out
    pid, priceable = book.provider_id(provider)
    if not priceable:
        out["source"] = f"no list price for {provider}: add a price override"
        return out
    entry = book.entry(model, pid, when)
    if entry is None:
        return out
    info = entry.model_info
    prices, tiers, other = _prices(info.get_prices(when))
    fees = {k: prices.pop(k) for k in list(prices) if k in FEES.values()}
    variants: dict[str, dict[str, Any]] = {}
    for v in info.price_variants or ():
        if v.constraint is not None and not v.constraint.active(when):
            continue
        tier = tier_of(v.when)
        if tier in variants:
            continue  # the first active variant wins, as in genai-prices
        vp, vt, _ = _prices(v.prices)
        variants[tier] = {"when": dict(v.when), **vp, **({"tiers": vt} if vt else {})}
    conditions: list[str] = []
    if isinstance(info.prices, list):
        for c in info.prices:
            if c.constraint is not None:
                conditions.append(f"{type(c.constraint).__name__}: {c.constraint}")
    if info.context_window:
        conditions.append(f"context window {info.context_window:,} tokens")
    inp = prices.get("input_per_mtok")
    cache_write = prices.get("cache_write_per_mtok", inp)
    out.update(
        status=sc.COST_PRICED,
        source=f"{genai_version()} {entry.provider_id}/{info.id}",
        version=genai_version(),
        price_id=genai_price_id(entry.provider_id, info.id, period_start(entry.breaks, when.date()), STANDARD),
        matched_model=info.id,
        matched_provider=entry.provider_id,
        input_per_mtok=inp,
        output_per_mtok=prices.get("output_per_mtok"),
        cache_read_per_mtok=prices.get("cache_read_per_mtok", inp),
        cache_write_per_mtok=cache_write,
        cache_write_1h_per_mtok=prices.get("cache_write_1h_per_mtok", cache_write),
        tiers=tiers,
        fees=fees,
        service_tiers=variants,
        conditions=conditions,
        other=other,
    )
    return out
