"""Allowances: what a budget's period may spend beyond its plain limit, and what it owes.

    rollover = {periods = 2}      # unused spend carries into the next period, at most 2 periods' worth
    rollover = {max_usd = 50}     # ... at most $50 (both: the smaller cap)
    allowance_usd = 10            # included per scope value and period; beyond it is overage:
    overage = "warn"              #   let through, each call's overage a row (priced at overage_rate)
    overage = "block"             #   refuse at the allowance (AllowanceExceeded shows the overage price)
    overage = "downgrade"         #   refuse with AllowanceExceeded.downgrade_to (e.g. a fallback model)

Carry (calendar periods only): entering period k, carry_k = min(cap, included + carry_{k-1} -
spent_{k-1}, floored at 0), `included` being the allowance (else the limit); a period with no
calls in between spent nothing. The period's limit and allowance both grow by its carry. The
first process to enter the period works it out under the ledger's lock, so every process
agrees, and records it: a `carry` row in budget_events (estimated_cost_usd = the carry).

    lend_limit_usd = 200          # makes a budget a pool; its members name it:
    pool = "org"                  #   past its own limit a member borrows from the pool, up to
                                  #   the pool's lend limit while the pool has room (the pool
                                  #   counts every member's calls)

A member's loan is the part of its spend past its own limit (plus carry): a `loan` row per
call that borrows. The debt is repaid from the member's next period: it enters it with a
negative carry (its limit that period is lower by the debt), a `repay` row.

Every carry, loan, repayment and overage is a row in budget_events (the amount in
estimated_cost_usd), so `replay(rows)` rebuilds each budget instance's state from the table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .periods import CALENDAR, window

if TYPE_CHECKING:
    from .model import Budget

__all__ = [
    "CARRY",
    "LOAN",
    "OVERAGE",
    "OVERAGES",
    "REPAY",
    "Account",
    "carry_into",
    "check_allowance",
    "check_pools",
    "overage_of",
    "replay",
]

CARRY, OVERAGE, LOAN, REPAY = "carry", "overage", "loan", "repay"
OVERAGES = ("warn", "block", "downgrade")
_NANO = Decimal("1e9")


def check_allowance(b: Budget, where: Callable[[str, str], str], amount: Callable[[Any, str], Decimal]) -> None:
    """Validate (and normalise in place) a Budget's rollover / allowance fields."""
    name = b.name
    set_ = object.__setattr__
    r = b.rollover
    if r is not None:
        fix = "give rollover={'periods': 2} and/or {'max_usd': 50}"
        if not isinstance(r, Mapping) or not r:
            raise ConfigError(where(name, "rollover"), f"{r!r} is not a rollover cap", fix)
        for k in r:
            if k not in ("periods", "max_usd"):
                raise ConfigError(where(name, f"rollover.{k}"), "is not a rollover cap", fix)
        out: dict[str, Any] = {}
        if "periods" in r:
            p = r["periods"]
            if isinstance(p, bool) or not isinstance(p, int) or p < 1:
                raise ConfigError(where(name, "rollover.periods"), f"{p!r} is not a number of periods", "give a whole number >= 1, e.g. 2")
            out["periods"] = p
        if "max_usd" in r:
            try:
                out["max_usd"] = amount(r["max_usd"], name)
            except ConfigError:
                raise ConfigError(where(name, "rollover.max_usd"), f"{r['max_usd']!r} is not an amount", "give a dollar amount >= 0, e.g. 50") from None
        if b.period not in CALENDAR:
            raise ConfigError(where(name, "rollover"), f"needs a calendar period, not {b.period!r}", "use period='day', 'week' or 'month'")
        set_(b, "rollover", out)
    if b.allowance_usd is None:
        if b.overage != "warn" or b.downgrade_to is not None:
            raise ConfigError(where(name, "overage"), "applies past an allowance", "give allowance_usd too, e.g. allowance_usd=10")
    else:
        try:
            a = amount(b.allowance_usd, name)
        except ConfigError:
            raise ConfigError(where(name, "allowance_usd"), f"{b.allowance_usd!r} is not an amount", "give a dollar amount >= 0, e.g. allowance_usd=10") from None
        if a > b.limit:
            raise ConfigError(where(name, "allowance_usd"), f"{a} is above limit_usd {b.limit}", "make allowance_usd <= limit_usd (the limit caps allowance plus overage)")
        set_(b, "allowance_usd", a)
        if b.overage not in OVERAGES:
            raise ConfigError(where(name, "overage"), f"{b.overage!r} is not an overage action", "use 'warn', 'block' or 'downgrade'")
        if b.overage == "downgrade" and (not isinstance(b.downgrade_to, str) or not b.downgrade_to.strip()):
            raise ConfigError(where(name, "downgrade_to"), "is missing", "name the model to fall back to, e.g. downgrade_to='gpt-4o-mini'")
    try:
        rate = b.overage_rate if isinstance(b.overage_rate, Decimal) else Decimal(str(b.overage_rate).strip())
        ok = rate.is_finite() and rate >= 0 and not isinstance(b.overage_rate, bool)
    except (InvalidOperation, ValueError):
        ok = False
    if not ok:
        raise ConfigError(where(name, "overage_rate"), f"{b.overage_rate!r} is not a rate", "give a multiplier of the cost >= 0, e.g. overage_rate=1.2")
    set_(b, "overage_rate", rate)
    if b.lend_limit_usd is not None:
        try:
            set_(b, "lend_limit_usd", amount(b.lend_limit_usd, name))
        except ConfigError:
            raise ConfigError(where(name, "lend_limit_usd"), f"{b.lend_limit_usd!r} is not an amount", "give a dollar amount >= 0, e.g. lend_limit_usd=200") from None
        if b.per_value:
            raise ConfigError(where(name, "scope"), 'a pool is one budget, not one per value ("*")', "give the pool a fixed scope, or none")
    if b.pool is not None:
        if not isinstance(b.pool, str) or not b.pool.strip():
            raise ConfigError(where(name, "pool"), f"{b.pool!r} is not a budget name", "name the pool budget, e.g. pool='org'")
        if b.period not in CALENDAR:
            raise ConfigError(where(name, "pool"), f"needs a calendar period (loans are repaid the next period), not {b.period!r}", "use period='day', 'week' or 'month'")
        if b.allowance_usd is not None:
            raise ConfigError(where(name, "pool"), "and allowance_usd do not combine", "give the budget either a pool or an allowance")


def check_pools(budgets: list[Budget]) -> None:
    """Every `pool` names a pool budget (one with lend_limit_usd) that is not itself a member."""
    by_name = {b.name: b for b in budgets}
    for b in budgets:
        if b.pool is None:
            continue
        pool = by_name.get(b.pool)
        if pool is None or pool.lend_limit_usd is None:
            raise ConfigError(f"budgets[{b.name}].pool", f"{b.pool!r} is not a pool budget", f"add a budget named {b.pool!r} with lend_limit_usd")
        if pool.pool is not None:
            raise ConfigError(f"budgets[{pool.name}].pool", "a pool cannot borrow from another pool", "remove pool from the pool budget")


def carry_into(
    period: str, tz: str, included_n: int, cap_n: int, old_key: int, old_spent_n: int, old_carry_n: int, new_key: int, floor_n: int = 0
) -> int:
    """The carry (nano-dollars) of the period starting at `new_key` (ns), from the last period
    the ledger saw (`old_key`, its spend and carry); periods in between spent nothing. A pool's
    member carries its debt (negative, at least floor_n = -lend limit): repaid from this period."""
    carry = min(cap_n, max(floor_n, included_n + old_carry_n - old_spent_n))
    key = old_key
    for _ in range(10_000):  # a cap reached stays reached: at most cap / included + 1 turns
        end = window(period, tz, key).end_ns
        if end is None or end >= new_key or carry >= cap_n:
            break
        carry = min(cap_n, max(floor_n, included_n + carry))  # a whole period with no calls
        key = end
    return carry


def overage_of(allowance_n: int, spent_after_n: int, cost_n: int) -> int:
    """The part of a call's cost beyond the (period's) allowance."""
    before = spent_after_n - cost_n
    return max(0, spent_after_n - max(allowance_n, before))


@dataclass
class Account:
    """One budget instance's allowance state in one period, as budget_events records it."""

    carry_usd: Decimal = Decimal(0)
    overage_usd: Decimal = Decimal(0)  # priced at the overage rate
    overage_calls: int = 0
    loan_usd: Decimal = Decimal(0)  # a pool member's borrowing this period
    loans: int = 0
    repaid_usd: Decimal = Decimal(0)  # repaid from this period (last period's debt)


def replay(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, datetime], Account]:
    """Rebuild allowance state from budget_events rows (dicts with budget, scope_value, event,
    estimated_cost_usd, period_start, event_id): per (budget, scope value, period start)."""
    out: dict[tuple[str, str, datetime], Account] = {}
    seen: set[str] = set()
    for row in rows:
        kind = row["event"]
        if kind not in (CARRY, OVERAGE, LOAN, REPAY) or row["event_id"] in seen:
            continue
        seen.add(row["event_id"])  # several processes' copies of one event share its id
        acct = out.setdefault((row["budget"], row["scope_value"], row["period_start"]), Account())
        amount = Decimal(row["estimated_cost_usd"] or 0)
        if kind == CARRY:
            acct.carry_usd = amount
        elif kind == REPAY:
            acct.repaid_usd = amount
            acct.carry_usd = -amount
        elif kind == LOAN:
            acct.loan_usd += amount
            acct.loans += 1
        else:
            acct.overage_usd += amount
            acct.overage_calls += 1
    return out
