"""Amounts shown in a currency of the user's, at dated exchange rates the user provides.

The store, the ledger and every price stay in USD; this only turns USD into the configured
currency for people (a report, the dashboard) and a budget set in it into USD. A rate says how
many units of the currency one USD buys from its date on (until the next rate); a day with no
rate at or before it, or only one older than `max_age_days`, has no rate: MissingRate, a
one-line error naming the day and the fix. Never a silent 1:1. Money is Decimal throughout.

    [currency]
    code = "EUR"
    rates = { 2026-11-02 = "0.9234", 2026-11-09 = "0.9301" }   # and/or
    rates_file = "eur_rates.csv"                                  # lines: 2026-11-02,0.9234
    max_age_days = 7
"""

from __future__ import annotations

import csv
import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Any

from .errors import ConfigError, TokentrailError

__all__ = ["Currency", "MissingRate", "parse_currency"]

_CODE = re.compile(r"^[A-Z]{3}$")
_KEYS = ("code", "rates", "rates_file", "max_age_days", "symbol")
_SYMBOLS = {
    "USD": "$",
    "EUR": "€",
    "GBP": "£",
    "JPY": "¥",
    "INR": "₹",
    "CHF": "CHF ",
    "CAD": "CA$",
    "AUD": "A$",
}
Q = Decimal("0.000000001")


class MissingRate(TokentrailError):
    """No exchange rate for a day: the amount cannot be shown in the configured currency."""

    def __init__(self, code: str, day: date, detail: str, source: str) -> None:
        self.code, self.day = code, day
        fix = f"add a {code} rate dated {day.isoformat()} or earlier to {source}"
        super().__init__(
            f"tokentrail: currency: no USD->{code} rate for {day.isoformat()} ({detail}); {fix}"
        )


@dataclass(frozen=True)
class Currency:
    """USD -> `code` at dated rates (units of `code` per USD), sorted by day."""

    code: str
    days: tuple[date, ...]
    rates: tuple[Decimal, ...]
    max_age_days: int = 7
    source: str = "[currency] rates in tokentrail.toml"
    symbol: str = ""

    def rate(self, day: date | datetime) -> Decimal:
        """The rate in force on `day` (a datetime counts by its UTC date)."""
        if isinstance(day, datetime):
            day = day.astimezone(timezone.utc).date()
        i = bisect_right(self.days, day)
        if i == 0:
            first = self.days[0].isoformat() if self.days else "none"
            raise MissingRate(self.code, day, f"the first rate is dated {first}", self.source)
        since = self.days[i - 1]
        if (day - since).days > self.max_age_days:
            raise MissingRate(
                self.code,
                day,
                f"the latest is from {since.isoformat()}, older than max_age_days = {self.max_age_days}",
                self.source,
            )
        return self.rates[i - 1]

    def from_usd(self, usd: Decimal, day: date | datetime) -> Decimal:
        """USD as this currency on `day`, rounded half-even to the store's nano unit."""
        with localcontext() as ctx:
            ctx.prec = 38
            return (usd * self.rate(day)).quantize(Q, rounding=ROUND_HALF_EVEN)

    def to_usd(self, amount: Decimal, day: date | datetime) -> Decimal:
        """An amount of this currency (a budget's limit) in USD on `day`, to the nano-dollar."""
        with localcontext() as ctx:
            ctx.prec = 38
            return (amount / self.rate(day)).quantize(Q, rounding=ROUND_HALF_EVEN)

    def total(self, usd_by_day: Iterable[tuple[date | datetime, Decimal]]) -> Decimal:
        """Amounts of several days, each converted at its day's rate, summed."""
        return sum((self.from_usd(usd, day) for day, usd in usd_by_day), Decimal(0))

    def format(self, amount: Decimal | None, places: int = 2) -> str:
        if amount is None:
            return "-"
        sign = "-" if amount < 0 else ""
        value = f"{abs(amount):,.{places}f}"
        prefix = self.symbol or _SYMBOLS.get(self.code, "")
        return f"{sign}{prefix}{value}" if prefix else f"{sign}{value} {self.code}"


def _rate(value: Any, where: str) -> Decimal:
    fix = "give units of the currency per 1 USD as a number, e.g. 0.9234"
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise ConfigError(where, f"{value!r} is not a rate", fix)
    try:
        d = Decimal(str(value).strip())
    except InvalidOperation:
        raise ConfigError(where, f"{value!r} is not a rate", fix) from None
    if not d.is_finite() or d <= 0:
        raise ConfigError(where, f"{value!r} is not a positive rate", fix)
    return d


def _day(value: Any, where: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise ConfigError(
            where, f"{value!r} is not a date", "write it as YYYY-MM-DD, e.g. 2026-11-02"
        ) from None


def read_rates_file(path: Path) -> dict[date, Decimal]:
    """`date,rate` lines (a header line and blank lines are skipped)."""
    out: dict[date, Decimal] = {}
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(
            "currency.rates_file",
            f"cannot read {path} ({e.strerror or e})",
            "fix the path (relative to tokentrail.toml)",
        ) from None
    for n, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not "".join(row).strip() or row[0].strip().startswith("#"):
            continue
        if n == 1 and not row[0].strip()[:1].isdigit():
            continue  # a header
        if len(row) < 2:
            raise ConfigError(
                f"{path.name}:{n}",
                f"{','.join(row)!r} is not 'date,rate'",
                "write lines like 2026-11-02,0.9234",
            )
        out[_day(row[0], f"{path.name}:{n}")] = _rate(row[1], f"{path.name}:{n}")
    return out


def parse_currency(value: Any, base: Path | None = None) -> Currency | None:
    """A Currency from `[currency]` (a table), a Currency, or None. `rates_file` is read
    relative to `base` (the directory of tokentrail.toml)."""
    if value is None or isinstance(value, Currency):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(
            "currency",
            f"{value!r} is not a table",
            'write [currency] with code = "EUR" and rates or rates_file',
        )
    for key in value:
        if key not in _KEYS:
            raise ConfigError(
                f"currency.{key}", "is not a currency setting", f"use one of {', '.join(_KEYS)}"
            )
    code = str(value.get("code", "")).strip().upper()
    if not _CODE.match(code):
        raise ConfigError(
            "currency.code",
            f"{value.get('code')!r} is not a currency code",
            'give an ISO 4217 code, e.g. code = "EUR"',
        )
    rates: dict[date, Decimal] = {}
    sources = []
    if value.get("rates_file"):
        path = Path(str(value["rates_file"])).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        rates.update(read_rates_file(path))
        sources.append(str(path))
    table = value.get("rates") or {}
    if not isinstance(table, Mapping):
        raise ConfigError(
            "currency.rates",
            f"{table!r} is not a table of dates",
            'write rates = { 2026-11-02 = "0.9234" }',
        )
    for k, v in table.items():
        rates[_day(k, f"currency.rates.{k}")] = _rate(v, f"currency.rates.{k}")
    if table:
        sources.append("[currency] rates")
    if code != "USD" and not rates:
        raise ConfigError(
            "currency",
            f"no rates for {code}",
            "give rates = { YYYY-MM-DD = rate } or rates_file = 'rates.csv'",
        )
    age = value.get("max_age_days", 7)
    if isinstance(age, bool) or not isinstance(age, int) or age < 0:
        raise ConfigError(
            "currency.max_age_days",
            f"{age!r} is not a number of days",
            "give a whole number, e.g. 7 (31 for monthly rates)",
        )
    if code == "USD" and not rates:
        rates = {date(1970, 1, 1): Decimal(1)}
        age = 1 << 30
    days = tuple(sorted(rates))
    return Currency(
        code,
        days,
        tuple(rates[d] for d in days),
        age,
        " and ".join(sources) or "[currency]",
        str(value.get("symbol") or ""),
    )
