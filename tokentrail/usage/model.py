"""The one usage shape (`Usage`), its span attributes, and safe values: counts and costs as they
enter (see the package docstring for the conventions)."""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from .. import semconv as sc

__all__ = ["MAX_COST_USD", "MAX_TOKENS", "Usage", "collecting", "cost_or_none", "count_or_none", "note", "raw_text", "usage_attributes"]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one model call (or a sum of calls)."""

    input_tokens: int = 0  # cached tokens INCLUDED (OTel gen_ai.usage.input_tokens semantics)
    output_tokens: int = 0  # reasoning tokens INCLUDED
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False  # True when a tokenizer counted, not the provider
    # counts the provider sent that were not counts ("prompt_tokens=-5"): dropped to 0
    invalid: tuple[str, ...] = ()
    # fees (issue 14): the part of cache_write_tokens written for one hour (Anthropic's
    # cache_creation.ephemeral_1h_input_tokens), server-side web searches (billed per search),
    # and the service tier the response reports ("flex", "priority", "batch"; "" = standard)
    cache_write_1h_tokens: int = 0
    web_search_requests: int = 0
    service_tier: str = ""

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            estimated=self.estimated or other.estimated,
            invalid=_merge(self.invalid, other.invalid),
            cache_write_1h_tokens=self.cache_write_1h_tokens + other.cache_write_1h_tokens,
            web_search_requests=self.web_search_requests + other.web_search_requests,
            service_tier=_tier_of_sum(self.service_tier, other.service_tier),
        )

    @property
    def is_empty(self) -> bool:
        """True when every count is zero (a cache hit, or a provider that reported nothing)."""
        return not (
            self.input_tokens
            or self.output_tokens
            or self.cache_read_tokens
            or self.cache_write_tokens
            or self.reasoning_tokens
            or self.web_search_requests
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def _tier_of_sum(a: str, b: str) -> str:
    return a if a == b or not b else b if not a else "mixed"


def usage_attributes(u: Usage) -> dict[str, int | bool | str | list[str]]:
    """Span attributes for a usage. Input and output are always set; the subsets and the
    estimated and invalid flags only when non-zero / true, to keep spans lean (a missing one
    reads as 0)."""
    attrs: dict[str, int | bool | str | list[str]] = {
        sc.GEN_AI_USAGE_INPUT_TOKENS: u.input_tokens,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: u.output_tokens,
    }
    # one test each, not a loop over a table: this runs for every model call (a loop with
    # getattr costs twice the bytecodes)
    if u.cache_read_tokens:
        attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = u.cache_read_tokens
    if u.cache_write_tokens:
        attrs[sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS] = u.cache_write_tokens
    if u.reasoning_tokens:
        attrs[sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = u.reasoning_tokens
    if u.cache_write_1h_tokens:
        attrs[sc.USAGE_CACHE_WRITE_1H_TOKENS] = u.cache_write_1h_tokens
    if u.web_search_requests:
        attrs[sc.USAGE_WEB_SEARCH_REQUESTS] = u.web_search_requests
    if u.service_tier:
        attrs[sc.SERVICE_TIER] = u.service_tier
    if u.estimated:
        attrs[sc.USAGE_ESTIMATED] = True
    if u.invalid:
        attrs[sc.USAGE_INVALID] = list(u.invalid)
    return attrs



# -- safe values -----------------------------------------------------------------------------

# More tokens than one call can bill (context windows hold ~1e6-1e7): a bigger count is a
# provider's or a proxy's bug, and priced it would put an absurd figure in the ledger.
MAX_TOKENS = 1_000_000_000
# the largest value the store's Decimal(18, 9) cost columns hold
MAX_COST_USD = Decimal("999999999.999999999")
_NANO = Decimal("1e-9")
_MAX_INVALID = 16  # flags kept per usage: enough to say what was wrong


def count_or_none(value: Any) -> int | None:
    """A token count as an int in [0, MAX_TOKENS]; None when `value` is not one (negative,
    non-finite, fractional, a bool, text that is no number, a nested object, or absurd).
    Integral floats and numeric strings ("12", "12.0", "1e3") are counts."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= MAX_TOKENS else None
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            return None
        return count_or_none(int(value))
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 32:  # no count needs 32 characters (and int() of a huge one is slow)
            return None
        try:
            return count_or_none(int(text))
        except ValueError:
            try:
                return count_or_none(float(text))
            except ValueError:
                return None
    if isinstance(value, Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            return None
        return count_or_none(int(value))
    try:
        return count_or_none(operator.index(value))  # numpy integers and the like
    except TypeError:
        return None


def cost_or_none(value: Any) -> Decimal | None:
    """A cost in USD as a Decimal at 9 places that Decimal(18, 9) holds; None when `value` is
    not one (non-finite, not a number, beyond +-999,999,999.999999999)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value).strip())
        if not d.is_finite() or abs(d) > MAX_COST_USD:
            return None
        return d.quantize(_NANO)
    except (InvalidOperation, ValueError):
        return None


def raw_text(value: Any, limit: int = 100) -> str:
    """A raw value as kept beside its flag: its repr, cut short."""
    try:
        text = repr(value)
    except Exception:  # a broken __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# values dropped while one payload is read (see collecting)
_invalid: ContextVar[list[str] | None] = ContextVar("tokentrail_usage_invalid", default=None)

F = TypeVar("F", bound=Callable[..., Any])


def _merge(a: tuple[str, ...], b: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*a, *b)))[:_MAX_INVALID]


def note(key: str, value: Any) -> None:
    bucket = _invalid.get()
    if bucket is not None and len(bucket) < _MAX_INVALID:
        bucket.append(f"{key}={raw_text(value)}")


def collecting(func: F) -> F:
    """The Usage `func` returns lists the values dropped while it read its payload (the
    outermost reader collects for the readers it calls)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _invalid.get() is not None:
            return func(*args, **kwargs)
        bucket: list[str] = []
        token = _invalid.set(bucket)
        try:
            usage = func(*args, **kwargs)
        finally:
            _invalid.reset(token)
        if bucket and isinstance(usage, Usage):
            usage = replace(usage, invalid=_merge(usage.invalid, bucket))
        return usage

    return wrapper  # type: ignore[return-value]


