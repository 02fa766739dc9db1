"""Budget definitions: the `Budget` dataclass, its validation, and compiled scope matching.

A `Budget` is plain data (it may come from code or from `[[budgets]]` in tokentrail.toml);
`compile_budget` turns it into what the call path needs: Decimal amounts worked out once and a
scope matcher that reads an `Attribution` without building anything.
"""

from __future__ import annotations

import math
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from itertools import product
from typing import TYPE_CHECKING, Any, cast

from ..context import FIELDS, Attribution
from ..errors import ConfigError
from .periods import PERIODS

if TYPE_CHECKING:
    from .alerts import BudgetEvent

__all__ = [
    "ACTIONS",
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "SCOPE_FIELDS",
    "Budget",
    "CompiledBudget",
    "coerce_budgets",
    "compile_budget",
]

SCOPE_FIELDS: tuple[str, ...] = FIELDS
ACTIONS = ("block", "warn")
UNPRICED = ("allow", "block")
WILDCARD = "*"
# The output cap assumed when neither the call (max_tokens) nor the budget says: a common
# provider default for chat completions. Calls asking for more must say so to be admitted.
DEFAULT_MAX_OUTPUT_TOKENS = 4096
_TOML_KEYS = (
    "name",
    "limit_usd",
    "period",
    "scope",
    "warn_at",
    "action",
    "timezone",
    "unpriced",
    "max_output_tokens",
    "webhook_url",
    "currency",
    "rollover",
    "allowance_usd",
    "overage",
    "overage_rate",
    "downgrade_to",
    "pool",
    "lend_limit_usd",
)
# Budgets set in another currency (issue 14, the currency hook): `[[budgets]] limit = 900` with
# `currency = "EUR"` (`limit` only beside `currency`) is converted to limit_usd when parsed, by the `to_usd(amount, code, where)`
# that config.py passes (the [currency] rates of the day the settings are resolved); the
# manager, the ledger and the store only ever see USD. `currency` and `amount` keep what was set.
ToUsd = Callable[[Decimal, str, str], Decimal]


def _where(name: Any, key: str) -> str:
    return f"budgets[{name}].{key}" if name else f"budgets.{key}"


def _limit(value: Any, name: str) -> Decimal:
    fix = "give a dollar amount >= 0, e.g. limit_usd=100"
    if isinstance(value, bool) or value is None:
        raise ConfigError(_where(name, "limit_usd"), f"{value!r} is not an amount", fix)
    try:
        # str() first: 0.1 stays Decimal('0.1'), not the float's binary expansion
        d = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ConfigError(_where(name, "limit_usd"), f"{value!r} is not an amount", fix) from None
    if not d.is_finite():
        raise ConfigError(_where(name, "limit_usd"), f"{value!r} is not a finite amount", fix)
    if d < 0:
        raise ConfigError(_where(name, "limit_usd"), f"{value} is negative", fix)
    if d > Decimal("999999999"):  # the store's Decimal(18, 9)
        raise ConfigError(_where(name, "limit_usd"), f"{value} is too large", "use at most 999999999")
    return d


def _warn_at(value: Any, name: str) -> tuple[float, ...]:
    fix = "give fractions of the limit in (0, 1], e.g. warn_at=(0.5, 0.8, 0.95)"
    items: Iterable[Any]
    if value is None:
        return ()
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        items = (value,)
    elif isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigError(_where(name, "warn_at"), f"{value!r} is not a list of fractions", fix)
    else:
        items = value
    out: set[float] = set()
    for v in items:
        if isinstance(v, bool) or not isinstance(v, (int, float, Decimal)):
            raise ConfigError(_where(name, "warn_at"), f"{v!r} is not a number", fix)
        f = float(v)
        if not math.isfinite(f) or f <= 0 or f > 1:
            raise ConfigError(_where(name, "warn_at"), f"{v} is outside (0, 1]", fix)
        out.add(f)
    return tuple(sorted(out))


def _scope(value: Any, name: str) -> dict[str, str]:
    fix = f'use attribution fields ({", ".join(SCOPE_FIELDS)}) with a value or "*", e.g. scope={{"team": "search"}}'
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(_where(name, "scope"), f"{value!r} is not a mapping", fix)
    out: dict[str, str] = {}
    for k, v in value.items():
        if k not in SCOPE_FIELDS:
            raise ConfigError(_where(name, f"scope.{k}"), "is not an attribution field", fix)
        if isinstance(v, bool) or not isinstance(v, (str, int)) or str(v).strip() == "":
            raise ConfigError(_where(name, f"scope.{k}"), f"{v!r} is not a value", 'give one value, or "*" for one budget per value')
        out[str(k)] = str(v).strip()
    return out


@dataclass(frozen=True, eq=False)
class Budget:
    """A spending limit over a period for the calls whose attribution matches `scope`.

    Args:
        name: unique name, shown in alerts, `BudgetExceeded` and `tokentrail budgets`.
        limit_usd: the limit in USD (int, str or Decimal; floats go through str()).
        period: `day` | `week` | `month` (calendar, in `timezone`; weeks start on Monday),
            `total` (no reset), or rolling `24h` | `7d` | `30d`.
        scope: attribution fields to match (project, environment, team, feature, user_id,
            session_id, tags). `"*"` makes one budget per distinct value: `{"user_id": "*"}` is
            one budget per user. A call without that field is outside such a budget. An empty
            scope matches every call in the store.
        warn_at: fractions of the limit that alert once per period each (the limit itself,
            1.0, always alerts).
        action: `block` raises BudgetExceeded before the provider is called; `warn` only
            records and alerts.
        timezone: IANA zone for calendar periods (when a day/week/month starts).
        unpriced: `allow` lets calls to a model with no price through (with an `unpriced`
            event, cost unknown); `block` refuses them.
        max_output_tokens: output cap assumed when a call gives no max_tokens (default
            DEFAULT_MAX_OUTPUT_TOKENS = 4096).
        webhook_url: where this budget's alerts are POSTed (else configure's webhook_url).
        on_alert: called with each `BudgetEvent` of this budget, off the call path.
        rollover: {"periods": n} and/or {"max_usd": x}: unused spend carries into the next
            calendar period, capped (allowances.py).
        allowance_usd: included amount per scope value and period; past it `overage`: "warn"
            (let through, each call's overage a row, priced at `overage_rate` x the cost),
            "block" or "downgrade" (refused with AllowanceExceeded; `downgrade_to` names the
            model to use instead).
        pool: the name of a pool budget this one may borrow from past its limit.
        lend_limit_usd: makes this budget a pool: what each member may owe it per period.
    """

    name: str
    limit_usd: Decimal | int | float | str
    period: str = "month"
    scope: Mapping[str, str] = field(default_factory=dict)
    warn_at: Sequence[float] | float = (0.5, 0.8, 0.95)
    action: str = "block"
    timezone: str = "UTC"
    unpriced: str = "allow"
    max_output_tokens: int | None = None
    webhook_url: str | None = None
    on_alert: Callable[[BudgetEvent], Any] | None = field(default=None, repr=False)
    currency: str = "USD"  # the currency the limit was set in (converted: limit_usd is USD)
    amount: Decimal | None = None  # the limit as set in `currency`
    rollover: Mapping[str, Any] | None = None
    allowance_usd: Decimal | int | float | str | None = None
    overage: str = "warn"
    overage_rate: Decimal | int | float | str = 1
    downgrade_to: str | None = None
    pool: str | None = None
    lend_limit_usd: Decimal | int | float | str | None = None

    def __post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str) or not name.strip() or len(name) > 128 or "\n" in name:
            raise ConfigError("budgets.name", f"{name!r} is not a budget name", "give a short unique name, e.g. name='search-team'")
        name = name.strip()
        set_ = object.__setattr__
        set_(self, "name", name)
        set_(self, "limit_usd", _limit(self.limit_usd, name))
        if self.period not in PERIODS:
            raise ConfigError(_where(name, "period"), f"{self.period!r} is not a period", f"use one of {', '.join(PERIODS)}")
        set_(self, "scope", _scope(self.scope, name))
        set_(self, "warn_at", _warn_at(self.warn_at, name))
        # pools and allowances: allowances.check_allowance, below
        if self.action not in ACTIONS:
            raise ConfigError(_where(name, "action"), f"{self.action!r} is not an action", "use 'block' or 'warn'")
        if self.unpriced not in UNPRICED:
            raise ConfigError(_where(name, "unpriced"), f"{self.unpriced!r} is not allowed", "use 'allow' or 'block'")
        tz = self.timezone
        try:
            if not isinstance(tz, str) or not tz:
                raise ValueError
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(_where(name, "timezone"), f"{tz!r} is not a time zone", "use an IANA name such as 'UTC' or 'Europe/Paris'") from None
        cap = self.max_output_tokens
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap <= 0):
            raise ConfigError(_where(name, "max_output_tokens"), f"{cap!r} is not a positive integer", "give a token count, e.g. 1024")
        hook = self.webhook_url
        if hook is not None and (not isinstance(hook, str) or not hook.startswith(("http://", "https://"))):
            raise ConfigError(_where(name, "webhook_url"), f"{hook!r} is not an http(s) URL", "give the full URL, e.g. https://hooks.example.com/x")
        if self.on_alert is not None and not callable(self.on_alert):
            raise ConfigError(_where(name, "on_alert"), "is not callable", "pass a function taking a BudgetEvent")
        from .allowances import check_allowance

        check_allowance(self, _where, _limit)

    @property
    def limit(self) -> Decimal:
        """`limit_usd` as the Decimal it always is after validation."""
        assert isinstance(self.limit_usd, Decimal)
        return self.limit_usd

    @property
    def allowance(self) -> Decimal:
        """`allowance_usd` as a Decimal (the limit when the budget has no allowance)."""
        a = self.allowance_usd
        return a if isinstance(a, Decimal) else self.limit

    @property
    def per_value(self) -> bool:
        """True when the scope has a `"*"`: one budget per distinct value."""
        return WILDCARD in self.scope.values()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], index: int = 0, to_usd: ToUsd | None = None) -> Budget:
        """A Budget from a `[[budgets]]` table (`limit` + `currency`: converted with to_usd)."""
        name = data.get("name")
        where = f"budgets[{name}]" if name else f"budgets[{index}]"
        allowed = (*_TOML_KEYS, "limit") if "currency" in data else _TOML_KEYS
        for key in data:
            if key not in allowed:
                raise ConfigError(f"{where}.{key}", "is not a budget setting", f"use one of {', '.join(_TOML_KEYS)}")
        data = _in_usd(dict(data), where, to_usd)
        for key in ("name", "limit_usd"):
            if key not in data:
                raise ConfigError(f"{where}.{key}", "is missing", "every budget needs a name and a limit_usd")
        return cls(**data)


def _in_usd(data: dict[str, Any], where: str, to_usd: ToUsd | None) -> dict[str, Any]:
    """`limit` (+ `currency`) as limit_usd: the currency hook."""
    code = str(data.pop("currency", "USD") or "USD").strip().upper()
    if "limit" not in data:
        if code != "USD":
            raise ConfigError(f"{where}.limit", "is missing", f"a budget in {code} gives limit = <amount in {code}> (not limit_usd)")
        return data
    if "limit_usd" in data:
        raise ConfigError(f"{where}.limit", "is given with limit_usd", "give one of them")
    amount = _limit(data.pop("limit"), str(data.get("name") or ""))
    if code == "USD":
        return {**data, "limit_usd": amount}
    if to_usd is None:
        raise ConfigError(f"{where}.currency", f"{code} has no exchange rates here", f'add [currency] with code = "{code}" and rates')
    return {**data, "limit_usd": to_usd(amount, code, f"{where}.currency"), "currency": code, "amount": amount}


def coerce_budgets(value: Iterable[Any], to_usd: ToUsd | None = None) -> list[Budget]:
    """Budgets from Budget objects and/or `[[budgets]]` tables; names must be unique."""
    out: list[Budget] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        if isinstance(item, Budget):
            b = item
        elif isinstance(item, Mapping):
            b = Budget.from_mapping(item, i, to_usd)
        else:
            raise ConfigError(f"budgets[{i}]", f"{type(item).__name__} is not a budget", "pass tokentrail.Budget(...) objects or [[budgets]] tables")
        if b.name in seen:
            raise ConfigError(f"budgets[{b.name}]", "is defined twice", "give each budget a unique name")
        seen.add(b.name)
        out.append(b)
    from .allowances import check_pools

    check_pools(out)
    return out


# -- compiled form, for the call path ---------------------------------------------------------


@dataclass(eq=False)
class CompiledBudget:
    """A budget as the manager uses it. `keys(attribution)` gives the scope keys a call falls
    into: [] (not in scope), [()] (a budget without "*"), or one key per distinct value."""

    index: int
    budget: Budget
    limit: Decimal
    block: bool
    unpriced_block: bool
    max_output_tokens: int
    # (threshold, amount) ascending; always ends with the limit itself (1.0)
    thresholds: tuple[tuple[float, Decimal], ...]
    fixed: tuple[tuple[str, str], ...]
    star: tuple[str, ...]
    # the limit and the threshold amounts in nano-dollars (the manager's integer money)
    limit_n: int = 0
    thresholds_n: tuple[int, ...] = ()
    # allowances (allowances.py): the included amount, the rollover cap, nano-dollars
    allowance_n: int | None = None
    carry_cap_n: int | None = None
    lend_limit_n: int | None = None  # a pool: what each member may owe it
    lend_n: int = 0  # a pool's member: what it may borrow beyond its limit (the manager links it)

    def keys(self, a: Attribution) -> list[tuple[str, ...]]:
        for f, v in self.fixed:
            if f == "tags":
                if v not in a.tags:
                    return []
            elif getattr(a, f) != v:
                return []
        if not self.star:
            return [()]
        choices: list[Sequence[str]] = []
        for f in self.star:
            if f == "tags":
                if not a.tags:
                    return []
                choices.append(a.tags)
            else:
                v = getattr(a, f)
                if not v:
                    return []
                choices.append((v,))
        if len(choices) == 1:
            return [(v,) for v in choices[0]]
        return [tuple(k) for k in product(*choices)]


def scope_value(key: tuple[str, ...]) -> str:
    """How a scope key reads in events and tables: the value ("alice"), or "search/alice"."""
    return "/".join(key)


def compile_budget(index: int, b: Budget, default_cap: int = DEFAULT_MAX_OUTPUT_TOKENS) -> CompiledBudget:
    limit = b.limit
    warn_at = cast("tuple[float, ...]", b.warn_at)  # a tuple after Budget.__post_init__
    fractions = sorted({*warn_at, 1.0})  # reaching the limit always alerts
    thresholds = tuple((t, limit * Decimal(str(t))) for t in fractions)
    nano = Decimal("1e9")
    return CompiledBudget(
        index=index,
        budget=b,
        limit=limit,
        block=b.action == "block",
        unpriced_block=b.unpriced == "block",
        max_output_tokens=b.max_output_tokens or default_cap,
        thresholds=thresholds,
        fixed=tuple((k, v) for k, v in b.scope.items() if v != WILDCARD),
        star=tuple(k for k, v in b.scope.items() if v == WILDCARD),
        # a threshold fires once spend reaches it: round its amount up to a whole nano-dollar
        limit_n=int((limit * nano).to_integral_value(rounding=ROUND_FLOOR)),
        thresholds_n=tuple(int((amount * nano).to_integral_value(rounding=ROUND_CEILING)) for _, amount in thresholds),
        allowance_n=None if b.allowance_usd is None else int((b.allowance * nano).to_integral_value(rounding=ROUND_FLOOR)),
        carry_cap_n=_carry_cap(b, limit),
        lend_limit_n=None if b.lend_limit_usd is None else int((cast(Decimal, b.lend_limit_usd) * nano).to_integral_value(rounding=ROUND_FLOOR)),
    )


def _carry_cap(b: Budget, limit: Decimal) -> int | None:
    if not b.rollover:
        return None
    included = b.allowance if b.allowance_usd is not None else limit
    caps = []
    if "periods" in b.rollover:
        caps.append(included * int(b.rollover["periods"]))
    if "max_usd" in b.rollover:
        caps.append(Decimal(b.rollover["max_usd"]))
    return int((min(caps) * Decimal("1e9")).to_integral_value(rounding=ROUND_FLOOR))
