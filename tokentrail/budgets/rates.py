"""A model's price as the budget check needs it: per call, per input token and per output
token, in integer atto-dollars (1e-18), cached per model, provider, UTC day and prompt size."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import ROUND_CEILING, Decimal
from typing import Any

from ..usage import Usage
from .instances import C
from .periods import NS

__all__ = ["Rates"]

_DAY_NS = 86400 * NS
_OUT_PROBE = 65536  # output tokens used to measure a model's output price per token
_MIN_BUCKET = 1024
_ATTO = Decimal("1e18")


def _atto(d: Decimal) -> int:
    """Atto-dollars, rounded up (a per-token price finer than 1e-18 only makes a worst case larger)."""
    return int(C.multiply(d, _ATTO).to_integral_value(rounding=ROUND_CEILING, context=C))


class Rates:
    def __init__(self, prices: Any, max_entries: int) -> None:
        self._prices = prices  # a host.Prices
        self._max = max_entries
        self._rates: dict[tuple[str | None, str | None, int, int], tuple[int, int, int] | None] = {}

    def get(self, model: str | None, provider: str | None, now: int, prompt_tokens: int) -> tuple[int, int, int] | None:
        """(per call, per input token, per output token) of a model on the call's UTC day in
        atto-dollars (rounded up: a worst case never comes out low), or None when it has no
        price. Measured at the power of two above the prompt size, so a tiered price (a cliff
        on input size) comes out at the tier the call can reach."""
        bucket = _MIN_BUCKET if prompt_tokens <= _MIN_BUCKET else 1 << (prompt_tokens - 1).bit_length()
        k = (model, provider, now // _DAY_NS, bucket)
        try:
            return self._rates[k]
        except KeyError:
            pass
        rates: tuple[int, int, int] | None = None
        if model:
            when = datetime.fromtimestamp(now / NS, tz=timezone.utc)
            prices = self._prices
            base = prices.cost(Usage(), model, provider, when).total_usd
            inp = prices.cost(Usage(input_tokens=bucket), model, provider, when).total_usd
            both = prices.cost(Usage(input_tokens=bucket, output_tokens=_OUT_PROBE), model, provider, when).total_usd
            if base is not None and inp is not None and both is not None:
                per_in = C.divide(C.subtract(inp, base), bucket)
                per_out = C.divide(C.subtract(both, inp), _OUT_PROBE)
                rates = (_atto(base), _atto(per_in), _atto(per_out))
        if len(self._rates) >= self._max:
            self._rates = {}
        self._rates[k] = rates  # a race prices it twice, harmlessly
        return rates
