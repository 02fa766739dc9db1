"""Formatting for people: money from Decimal (never via float), counts, durations."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

MONEY_AXIS_FORMAT = "$,.4~f"  # d3-format: $ sign, thousands, up to 4 decimals, zeros trimmed


def usd(value: Decimal | None, *, places: int | None = None) -> str:
    """$1,234.57 for dollars, more places for cents' fractions (a call often costs $0.0001)."""
    if value is None:
        return "—"
    if places is None:
        a = abs(value)
        places = 2 if a >= 100 or a == 0 else 4 if a >= Decimal("0.01") else 6
    q = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    sign = "-" if q < 0 else ""
    return f"{sign}${abs(q):,.{places}f}"


def count(value: int | None) -> str:
    return "—" if value is None else f"{int(value):,}"


def pct(part: Decimal | int | None, whole: Decimal | int | None) -> str:
    if part is None or not whole:
        return "—"
    share = Decimal(part) * 100 / Decimal(whole)
    return f"{share.quantize(Decimal('0.1'), rounding=ROUND_HALF_EVEN)}%"


def ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


def to_float(value: Any) -> float:
    """Chart edge only: Altair/Vega need floats; money stays Decimal everywhere else."""
    return 0.0 if value is None else float(value)
