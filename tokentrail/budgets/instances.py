"""What the call path works with: a budget instance (one budget, one scope value, its current
period), the Reservation a call holds, which budgets a call falls under, and integer money.

Money on the call path is integer nano-dollars (the store's Decimal(18, 9) exactly): exact,
and immune to the application's decimal context. Figures leave the manager as Decimal.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Context, Decimal
from typing import Any

from ..context import Attribution
from .allowances import carry_into
from .model import CompiledBudget
from .model import scope_value as scope_value_of

__all__ = ["Inst", "Matcher", "Plan", "Reservation", "dec", "nanos"]

C = Context(prec=28, rounding=ROUND_HALF_EVEN)  # money math immune to the app's decimal context
_NANO = Decimal("1e9")
_NEVER = 2**63


def nanos(d: Decimal, *, ceiling: bool = False) -> int:
    """Nano-dollars; costs are already whole nano-dollars, worst cases round up."""
    n = C.multiply(d, _NANO)
    return int(n.to_integral_value(rounding=ROUND_CEILING if ceiling else ROUND_HALF_EVEN, context=C))


def dec(n: int) -> Decimal:
    return Decimal(n).scaleb(-9, context=C)


class Inst:
    """One budget for one scope value, in its current period, as the ledger sees it (see
    ledger.Item). Fields change under the manager's lock."""

    __slots__ = (
        "cb",
        "key",
        "scope_value",
        "lo",
        "hi",
        "window_key",
        "lkey",
        "rolling_ns",
        "slot",
        "limit_n",
        "block",
        "thresholds_n",
        "spent_n",
        "unpriced_models",
        "block_alerted_at",
        "forecast_alerted",
        "forecast_from",
        "off",
        "kw",
        "carries",
        "allowance_n",
        "loan_base_n",
    )

    def __init__(self, cb: CompiledBudget, key: tuple[str, ...], lkey: bytes, rolling_ns: int) -> None:
        self.cb = cb
        self.key = key
        self.scope_value = scope_value_of(key)
        self.lo = self.hi = 0  # the period is [lo, hi) in ns; lo=hi=0 until first rolled
        self.window_key = -1
        self.lkey = lkey
        self.rolling_ns = rolling_ns
        self.slot = -1
        b = cb.budget
        gate = cb.allowance_n is not None and b.overage != "warn"
        # what the ledger refuses above: the allowance when overage blocks or downgrades
        self.limit_n = cb.allowance_n if gate and cb.allowance_n is not None else cb.limit_n
        self.block = cb.block or gate
        self.allowance_n = cb.allowance_n
        member = b.pool is not None
        if member:  # a pool's member may go past its own limit by what it may borrow
            self.limit_n = cb.limit_n + cb.lend_n
        self.loan_base_n = cb.limit_n if member else None  # spend past it (+ carry) is a loan
        self.carries = cb.carry_cap_n is not None or member  # the period's limit grows by the ledger's carry
        self.thresholds_n = cb.thresholds_n
        self.spent_n = 0  # the ledger's figure at this process's last look
        self.unpriced_models: set[str] = set()
        self.block_alerted_at: int | None = None
        self.forecast_alerted = False
        self.forecast_from = _NEVER  # when a forecast may first be checked (calendar budgets)
        self.off = -1  # the file ledger's cached byte offset; -1 after the period changed
        self.kw: tuple[bytes, int] = (lkey, -1)  # (lkey, window_key) the cached offset is for

    @property
    def spent(self) -> Decimal:
        return dec(self.spent_n)

    def carry_from(self, old_key: int, old_spent_n: int, old_carry_n: int) -> int:
        """The carry into this instance's period (the ledger calls it when the period starts)."""
        cb = self.cb
        b = cb.budget
        included = cb.allowance_n if cb.allowance_n is not None else cb.limit_n
        floor = -cb.lend_n if b.pool is not None else 0
        return carry_into(b.period, b.timezone, included, cb.carry_cap_n or 0, old_key, old_spent_n, old_carry_n, self.window_key, floor)


class Reservation:
    """What `reserve` set aside for one call; pass it to `settle` or `release` once (a second
    call is ignored)."""

    __slots__ = ("insts", "amounts", "los", "gen", "handle", "worst_n", "at_ns", "model", "done")

    def __init__(
        self,
        insts: Sequence[Inst],
        amounts: list[int],
        los: Sequence[int],
        gen: int,
        handle: Any,
        worst_n: int | None,
        at_ns: int,
        model: str | None,
    ) -> None:
        self.insts = insts
        self.amounts = amounts  # nano-dollars reserved per instance
        self.los = los  # each instance's period start when reserved
        self.gen = gen  # the manager's period generation then: unchanged = no period ended since
        self.handle = handle  # the ledger's; None when nothing was reserved (unpriced)
        self.worst_n = worst_n  # nano-dollars; None: an unpriced model
        self.at_ns = at_ns
        self.model = model
        self.done = False

    @property
    def worst_usd(self) -> Decimal | None:
        """The call's worst case (the largest reserved in any budget); None: unpriced."""
        return None if self.worst_n is None else dec(self.worst_n)

    @property
    def items(self) -> list[tuple[Inst, int, int]]:
        """(instance, nano-dollars reserved, its period's start) per budget instance."""
        return list(zip(self.insts, self.amounts, self.los, strict=True))

    @property
    def budgets(self) -> list[tuple[str, str]]:
        """(budget name, scope value) of every budget this call counts against."""
        return [(i.cb.budget.name, i.scope_value) for i in self.insts]


class Plan:
    """What one attribution's calls need, worked out once (the manager caches it per
    attribution): its instances, their output caps, and the span of time in which none of them
    changes period, so a call inside it skips the per-instance period checks."""

    __slots__ = ("insts", "caps", "uniform", "los", "lo", "hi", "gen")

    def __init__(self, insts: tuple[Inst, ...]) -> None:
        self.insts = insts
        self.caps = tuple(i.cb.max_output_tokens for i in insts)
        self.uniform = len(set(self.caps)) <= 1
        self.los: tuple[int, ...] = ()
        self.lo, self.hi, self.gen = 0, 0, -1  # invalid until validated

    def validate(self, gen: int) -> None:
        insts = self.insts
        self.los = tuple(i.lo for i in insts)
        self.lo = max(self.los, default=0)
        self.hi = min((i.hi for i in insts), default=0)
        self.gen = gen


class Matcher:
    """Which budgets a call falls under, without testing every budget: budgets with a fixed
    value on a field (team="search") are indexed by that value; the rest are tested one by one."""

    def __init__(self, compiled: list[CompiledBudget]) -> None:
        self.scan: list[CompiledBudget] = []
        self.index: dict[str, dict[str, list[CompiledBudget]]] = {}
        for cb in compiled:
            field = next((f for f, _ in cb.fixed if f != "tags"), None)
            if field is None:
                self.scan.append(cb)
            else:
                value = dict(cb.fixed)[field]
                self.index.setdefault(field, {}).setdefault(value, []).append(cb)

    def match(self, a: Attribution) -> list[tuple[CompiledBudget, tuple[str, ...]]]:
        out = [(cb, k) for cb in self.scan for k in cb.keys(a)]
        for field, by_value in self.index.items():
            for cb in by_value.get(getattr(a, field), ()):
                out.extend((cb, k) for k in cb.keys(a))
        out.sort(key=lambda t: t[0].index)  # configuration order: the first refusing budget is reported
        return out
