"""The budget manager's figures: a budget's spend, carry and reservations as the ledger holds
them now (every process's), by budget name and scope value (a mixin of BudgetManager)."""

from __future__ import annotations

import threading
from decimal import Decimal
from typing import Any

from .host import Host
from .instances import Inst, dec
from .model import CompiledBudget

__all__ = ["Figures"]

ZERO = Decimal(0)


class Figures:
    compiled: list[CompiledBudget]
    _rt: Host
    _ledger: Any
    _lock: threading.Lock

    def _inst(self, cb: CompiledBudget, key: tuple[str, ...]) -> Inst:  # BudgetManager has it
        raise NotImplementedError

    def _roll(self, inst: Inst, now: int) -> int | None:
        raise NotImplementedError

    def _named(self, budget: str, scope_value: str) -> Inst:
        cb = self._compiled_named(budget)
        key = tuple(scope_value.split("/")) if cb.star and scope_value else ()
        now = self._rt.now_ns()
        with self._lock:
            inst = self._inst(cb, key)
            floor = self._roll(inst, now) if not inst.lo <= now < inst.hi else None
        if floor:
            self._ledger.set_floor(inst, floor, now)
        return inst

    def spent(self, budget: str, scope_value: str = "") -> Decimal:
        """A budget's spend in its current period as the ledger holds it (every process's
        settled calls, or the store's figure when that is more), reservations excluded."""
        inst = self._named(budget, scope_value)
        spent, _ = self._ledger.figures(inst, self._rt.now_ns())
        return dec(spent)

    def carry_usd(self, budget: str, scope_value: str = "") -> Decimal:
        """What a budget's current period carried in (rollover; negative: a pool member's debt
        being repaid); 0 for other budgets."""
        inst = self._named(budget, scope_value)
        return dec(self._ledger.carry(inst, self._rt.now_ns()))

    def reserved_usd(self, budget: str, scope_value: str = "") -> Decimal:
        """Worst cases of the calls in flight for a budget, in every process on the ledger."""
        inst = self._named(budget, scope_value)
        _, reserved = self._ledger.figures(inst, self._rt.now_ns())
        return dec(reserved) if reserved else ZERO

    def _compiled_named(self, budget: str) -> CompiledBudget:
        for cb in self.compiled:
            if cb.budget.name == budget:
                return cb
        raise KeyError(budget)
