"""Money: Decimal at the store's Decimal(18, 9), in a context of our own, and a call's Cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import Any

from .. import semconv as sc
from ..errors import ConfigError

Q = Decimal("0.000000001")  # Decimal(18, 9)
# our own context: an application that lowers decimal precision must not change our money
CTX = Context(prec=28, rounding=ROUND_HALF_EVEN)
MTOK = Decimal(1_000_000)


def q(value: Decimal) -> Decimal:
    return value.quantize(Q, context=CTX)


@dataclass(frozen=True, slots=True)
class Cost:
    input_usd: Decimal | None
    output_usd: Decimal | None
    total_usd: Decimal | None
    status: str  # semconv.COST_PRICED | COST_OVERRIDE | COST_UNPRICED | COST_NO_USAGE
    source: str = ""  # e.g. "genai-prices openai/gpt-4o" or "override gpt-4o-ft"
    # per-request and per-search fees (neither input nor output): part of total_usd. These
    # three describe the price, not the amount: Costs compare by the fields above.
    fees_usd: Decimal | None = field(default=None, compare=False)
    # the row of tokentrail.prices that priced the call (pricing/table.py), and its version
    price_id: str = field(default="", compare=False)
    price_version: str = field(default="", compare=False)


def unpriced(source: str = "") -> Cost:
    return Cost(None, None, None, sc.COST_UNPRICED, source)


NO_USAGE = Cost(None, None, None, sc.COST_NO_USAGE)


def decimal_of(value: Any, field: str, *, positive: bool = False) -> Decimal:
    """A price from config: int, float, numeric string or Decimal, via str() (never float
    arithmetic: 0.1 stays Decimal('0.1'))."""
    what = "a positive number" if positive else "a non-negative number"
    fix = "write a plain number, e.g. 3 or 0.15"
    if isinstance(value, bool) or value is None:
        raise ConfigError(field, f"must be {what}, got {value!r}", fix)
    if isinstance(value, Decimal):
        d = value
    elif isinstance(value, (int, float, str)):
        try:
            d = Decimal(str(value).strip())
        except InvalidOperation:
            raise ConfigError(field, f"must be {what}, got {value!r}", fix) from None
    else:
        raise ConfigError(field, f"must be {what}, got {type(value).__name__}", fix)
    if not d.is_finite():
        raise ConfigError(field, f"must be {what}, got {value!r}", fix)
    if d < 0 or (positive and d == 0):
        raise ConfigError(field, f"must be {what}, got {value!r}", fix)
    return d
