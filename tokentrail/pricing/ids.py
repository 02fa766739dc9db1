"""Which row of the price table a genai-prices price is: one id per (provider, model, period,
tier), the same here and in table.py, so a span's price_id names the row that priced it."""

from __future__ import annotations

from bisect import bisect_right
from datetime import date
from functools import lru_cache
from typing import Any

STANDARD = "standard"


@lru_cache(maxsize=1)
def genai_version() -> str:
    from importlib import metadata

    try:
        return f"genai-prices {metadata.version('genai-prices')}"
    except metadata.PackageNotFoundError:
        return "genai-prices"


def tier_of(when: dict[str, str] | None) -> str:
    """A price variant's condition as a tier name: {"processing": "batch"} -> "batch"."""
    if not when:
        return STANDARD
    if when == {"processing": "batch"}:
        return "batch"
    if list(when) == ["service_tier"]:
        return when["service_tier"]
    return ",".join(f"{k}={v}" for k, v in sorted(when.items()))


def breakpoints(model_info: Any) -> tuple[date, ...]:
    """The days a model's prices change (its conditional prices' and variants' start dates)."""
    from genai_prices.types import StartDateConstraint

    days: set[date] = set()
    prices = model_info.prices if isinstance(model_info.prices, list) else []
    for holder in (*prices, *(model_info.price_variants or ())):
        c = getattr(holder, "constraint", None)
        if isinstance(c, StartDateConstraint):
            days.add(c.start_date)
    return tuple(sorted(days))


def period_start(breaks: tuple[date, ...], day: date) -> date | None:
    i = bisect_right(breaks, day)
    return breaks[i - 1] if i else None


def genai_price_id(provider_id: str, model_id: str, start: date | None, tier: str = STANDARD) -> str:
    return f"gp/{provider_id}/{model_id}/{start.isoformat() if start else '0'}/{tier}"


def price_key(price_id: str) -> dict[str, str]:
    """The columns of tokentrail.prices that name a price id's rows in every period: provider,
    model and tier for genai-prices' ids (the period is the id's fourth part), the id itself for
    an override's."""
    if price_id.startswith("gp/"):
        parts = price_id.split("/")
        if len(parts) >= 5:  # gp/<provider>/<model, may hold '/'>/<start>/<tier>
            return {"provider": parts[1], "model": "/".join(parts[2:-2]), "tier": parts[-1]}
    return {"price_id": price_id}


def override_price_id(name: str) -> str:
    return f"ov/{name}"
