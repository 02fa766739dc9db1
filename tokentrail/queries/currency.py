"""Spend in the configured currency (tokentrail.currency): the store holds USD, so a window's
spend is read per UTC day and each day converted at its own rate, then summed. A day without
a rate raises MissingRate (one line: the day and the fix), never a silent 1:1."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..currency import Currency
from ..store import Store
from .filters import Filters
from .spend import spend_series

__all__ = ["CurrencySpend", "spend_in_currency"]


@dataclass(frozen=True)
class CurrencySpend:
    """Spend by group in `code` (None: the group's calls have no known cost), and the total."""

    code: str
    by_key: dict[str, Decimal | None]
    total: Decimal | None


def spend_in_currency(
    store: Store,
    filters: Filters | None = None,
    *,
    currency: Currency | None = None,
    by: str = "model",
    now: datetime | None = None,
) -> CurrencySpend:
    """The filtered model calls' spend by `by` in `currency` (default: the store's settings')."""
    currency = currency if currency is not None else store.settings.currency
    if currency is None:
        raise ValueError("no currency configured")
    by_key: dict[str, Any] = defaultdict(lambda: None)
    for p in spend_series(store, filters, by=by, bucket="day", now=now):
        if p.cost_usd is None:
            by_key[p.key] = by_key[p.key]
            continue
        by_key[p.key] = (by_key[p.key] or Decimal(0)) + currency.from_usd(p.cost_usd, p.bucket)
    known = [v for v in by_key.values() if v is not None]
    return CurrencySpend(currency.code, dict(by_key), sum(known, Decimal(0)) if known else None)
