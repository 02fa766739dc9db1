"""Budget figures for `tokentrail budgets` and the dashboard: spent, limit, forecast, run-out date.

Everything here reads the store only (what every process has flushed), so the CLI, the
dashboard and SQL agree. Forecasts are linear: the spend rate so far in the period, carried
to the period's end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, cast

from .. import clock
from ..errors import format_usd as fmt_usd
from ..queries.budgets import budget_events, burndown_rows
from .allowances import CARRY, LOAN, OVERAGE, REPAY, Account, replay
from .model import Budget, CompiledBudget, coerce_budgets, compile_budget, scope_value
from .periods import CALENDAR, NS, Window, length_ns, window
from .spend import Spend, as_store, fetch_spend, scope_of

__all__ = ["BudgetStatus", "allowance_text", "burndown", "fmt_usd", "recent_events", "status"]

_Q = Decimal("0.000000001")


@dataclass(frozen=True)
class BudgetStatus:
    """One budget (one scope value of a per-value budget) in its current period.

    scope_value: "" for a budget without "*"; the user/team/... for a per-value budget; "*"
    for a per-value budget nobody has spent under yet. forecast_usd: spend at the period's end
    at the rate so far (calendar periods), None for `total` and rolling windows (a rolling
    window's spend is already its steady rate). exhausts_at: when the limit is reached at that
    rate (within the period for calendar periods, ever for `total`), None when it is not
    reached or already is (then state is "exceeded").
    """

    budget: str
    scope_value: str
    period: str
    action: str
    period_start: datetime | None
    period_end: datetime | None
    spent_usd: Decimal
    limit_usd: Decimal
    forecast_usd: Decimal | None
    exhausts_at: datetime | None
    calls: int
    state: str  # "ok" | "warning" (past the first warn_at) | "exceeded" (at or past the limit)
    # allowances, as budget_events records them for this period (allowances.replay): the carry
    # into it (rollover; a pool member's debt repaid from it, negative), a pool member's loans,
    # the overage past an included allowance (at the overage rate)
    carry_usd: Decimal = Decimal(0)
    loan_usd: Decimal = Decimal(0)
    loans: int = 0
    overage_usd: Decimal = Decimal(0)
    overage_calls: int = 0
    allowance_usd: Decimal | None = None

    @property
    def effective_limit_usd(self) -> Decimal:
        """The limit this period enforces: the configured one plus the carry into it."""
        return self.limit_usd + self.carry_usd

    @property
    def forecast_over(self) -> bool:
        """The forecast crosses the limit before the period ends (what the `forecast` alert says)."""
        return self.forecast_usd is not None and self.forecast_usd >= self.effective_limit_usd and self.state != "exceeded"

    @property
    def remaining_usd(self) -> Decimal:
        return max(self.effective_limit_usd - self.spent_usd, Decimal(0))

    @property
    def used(self) -> float:
        """Fraction of the limit (with its carry) spent (a ratio, not money)."""
        limit = self.effective_limit_usd
        if limit <= 0:
            return 0.0 if self.spent_usd == 0 else float("inf")
        return float(self.spent_usd / limit)


def allowance_text(s: BudgetStatus) -> str:
    """This period's carry, loans and overage in a few words ("-" when there are none)."""
    parts = []
    if s.carry_usd > 0:
        parts.append(f"carry +${fmt_usd(s.carry_usd)}")
    elif s.carry_usd < 0:
        parts.append(f"debt repaid ${fmt_usd(-s.carry_usd)}")
    if s.loans:
        parts.append(f"borrowed ${fmt_usd(s.loan_usd)} ({s.loans} loan{'s' if s.loans != 1 else ''})")
    if s.allowance_usd is not None:
        over = f", overage ${fmt_usd(s.overage_usd)} ({s.overage_calls} call{'s' if s.overage_calls != 1 else ''})" if s.overage_calls else ""
        parts.append(f"${fmt_usd(s.allowance_usd)} included{over}")
    return "; ".join(parts) or "-"


def _now_ns(now: datetime | int | None) -> int:
    if now is None:
        return clock.now_ns()
    if isinstance(now, datetime):
        if now.tzinfo is None:
            now = now.replace(tzinfo=timezone.utc)
        return int(now.timestamp()) * NS + now.microsecond * 1000
    return int(now)


def _dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / NS, tz=timezone.utc)


def _carries(cb: CompiledBudget) -> bool:
    """Its limit grows by the period's carry (rollover; a pool member's debt): as instances.Inst.carries."""
    return cb.carry_cap_n is not None or cb.budget.pool is not None


def _one(
    cb: CompiledBudget, w: Window, now: int, key: tuple[str, ...], s: Spend | None, label: str | None = None, acct: Account | None = None
) -> BudgetStatus:
    b = cb.budget
    acct = acct or Account()
    carry = acct.carry_usd if _carries(cb) else Decimal(0)
    limit = cb.limit + carry  # what the ledger enforces this period
    spent = s.spent_usd if s else Decimal(0)
    forecast: Decimal | None = None
    exhausts: datetime | None = None
    if spent > 0 and b.period in CALENDAR and w.end_ns is not None:
        elapsed = max(now - w.start_ns, 1)
        forecast = (spent * (length_ns(b.period, w) or elapsed) / elapsed).quantize(_Q)
        if spent < limit:
            t = now + int((limit - spent) * elapsed / spent)
            exhausts = _dt(t) if t < w.end_ns else None
    elif 0 < spent < limit and b.period == "total" and s is not None and s.first is not None:
        elapsed = max(now - _now_ns(s.first), 1)
        exhausts = _dt(now + int((limit - spent) * elapsed / spent))
    first_warn = min(cast("tuple[float, ...]", b.warn_at)) if b.warn_at else 1.0  # a tuple after validation
    if spent >= limit:
        state = "exceeded"
    elif spent >= limit * Decimal(str(first_warn)):
        state = "warning"
    else:
        state = "ok"
    return BudgetStatus(
        budget=b.name,
        scope_value=label if label is not None else scope_value(key),
        period=b.period,
        action=b.action,
        period_start=None if b.period == "total" else _dt(w.start_ns),
        period_end=None if w.end_ns is None else _dt(w.end_ns),
        spent_usd=spent,
        limit_usd=cb.limit,
        forecast_usd=forecast,
        exhausts_at=exhausts,
        calls=s.calls if s else 0,
        state=state,
        carry_usd=carry,
        loan_usd=acct.loan_usd,
        loans=acct.loans,
        overage_usd=acct.overage_usd,
        overage_calls=acct.overage_calls,
        allowance_usd=None if b.allowance_usd is None else Decimal(str(b.allowance_usd)),
    )


def _budgets(settings: Any) -> list[Budget]:
    return coerce_budgets(getattr(settings, "budgets", ()) or ())


def status(store: Any, settings: Any, now: datetime | int | None = None) -> list[BudgetStatus]:
    """Every budget of `settings` (each scope value of a per-value budget, biggest spender
    first) as the store sees it at `now` (default: the wall clock). `store` is an open
    `tokentrail.store.Store` (or a clickhouse-connect client)."""
    now_ns = _now_ns(now)
    compiled = [compile_budget(i, b) for i, b in enumerate(_budgets(settings))]
    items = [(cb, window(cb.budget.period, cb.budget.timezone, now_ns)) for cb in compiled]
    spend = fetch_spend(store, items)
    accounts = _accounts(store, items)
    out: list[BudgetStatus] = []
    for cb, w in items:
        start = _dt(w.start_ns).replace(tzinfo=None)  # budget_events' period_start (naive UTC)
        if not cb.star:
            out.append(_one(cb, w, now_ns, (), spend.get((cb.index, ())), acct=accounts.get((cb.budget.name, "", start))))
            continue
        mine = sorted(((k, s) for (i, k), s in spend.items() if i == cb.index), key=lambda ks: (-ks[1].spent_usd, ks[0]))
        if not mine:
            out.append(_one(cb, w, now_ns, (), None, label="*"))
        for k, s in mine:
            out.append(_one(cb, w, now_ns, k, s, acct=accounts.get((cb.budget.name, scope_value(k), start))))
    return out


def _accounts(store: Any, items: Sequence[tuple[CompiledBudget, Window]]) -> dict[tuple[str, str, datetime], Account]:
    """This period's carries, loans and overage of the budgets that have them, from budget_events
    (one read, and none when no budget has an allowance, a rollover or a pool)."""
    mine = [(cb, w) for cb, w in items if _carries(cb) or cb.allowance_n is not None]
    if not mine:
        return {}
    since = min(_dt(w.start_ns) for _, w in mine)
    rows = budget_events(as_store(store), events=(CARRY, OVERAGE, LOAN, REPAY), since=since, limit=None, oldest_first=True)
    names = {cb.budget.name for cb, _ in mine}
    return replay(r for r in rows if r["budget"] in names)


def burndown(
    store: Any, settings: Any, budget: str, scope_value: str = "", now: datetime | int | None = None
) -> list[tuple[datetime, Decimal]]:
    """Cumulative spend through the current period, by hour for `day` and `24h` budgets, else
    by day (in the budget's time zone): [(bucket start UTC, spent so far)]. For the burn-down
    chart against the limit."""
    now_ns = _now_ns(now)
    compiled = [compile_budget(i, b) for i, b in enumerate(_budgets(settings))]
    cb = next((c for c in compiled if c.budget.name == budget), None)
    if cb is None:
        raise KeyError(budget)
    w = window(cb.budget.period, cb.budget.timezone, now_ns)
    if cb.budget.period in ("day", "24h"):
        tz, grain = None, 3600
    else:  # days in the budget's zone: a rollup's hours or days fall inside them when its offsets allow
        tz, grain = cb.budget.timezone, _grain_in(cb.budget.timezone, w, now_ns)
    values = [] if not cb.star or scope_value in ("", "*") else (scope_value.split("/") if len(cb.star) > 1 else [scope_value])
    rows = burndown_rows(as_store(store), scope_of(cb, w), values=values, tz=tz, grain=grain)
    out: list[tuple[datetime, Decimal]] = []
    total = Decimal(0)
    for t, s in rows:
        total += Decimal(s or 0)
        out.append((datetime.fromtimestamp(int(t), tz=timezone.utc), total))
    return out


def _grain_in(tz: str, w: Window, now_ns: int) -> int:
    """The coarsest rollup bucket whose boundaries are that zone's day boundaries through the
    window: a day when it is UTC throughout, an hour for whole-hour offsets, else none (1 s)."""
    from .periods import _zone

    zone = _zone(tz)
    instants = [w.start_ns, now_ns] + ([w.end_ns] if w.end_ns is not None else [])
    offsets = set()
    for ns in instants:
        off = datetime.fromtimestamp(max(ns, 0) / NS, tz=zone).utcoffset()
        offsets.add(int(off.total_seconds()) if off is not None else 0)
    if offsets == {0}:
        return 86400
    return 3600 if all(o % 3600 == 0 for o in offsets) else 1


def recent_events(store: Any, *, budget: str | None = None, limit: int = 200, since: datetime | None = None) -> list[dict[str, Any]]:
    """The latest rows of the store's `budget_events`, newest first, as dicts."""
    return budget_events(as_store(store), budget=budget, since=since, limit=limit)


def status_rows(statuses: Sequence[BudgetStatus]) -> list[dict[str, Any]]:
    """Plain dicts (for a dataframe or JSON)."""
    return [
        {
            "budget": s.budget,
            "scope_value": s.scope_value,
            "period": s.period,
            "action": s.action,
            "period_start": s.period_start,
            "period_end": s.period_end,
            "spent_usd": s.spent_usd,
            "limit_usd": s.limit_usd,
            "remaining_usd": s.remaining_usd,
            "used": s.used,
            "forecast_usd": s.forecast_usd,
            "exhausts_at": s.exhausts_at,
            "calls": s.calls,
            "state": s.state,
            "carry_usd": s.carry_usd,
            "loan_usd": s.loan_usd,
            "loans": s.loans,
            "overage_usd": s.overage_usd,
            "overage_calls": s.overage_calls,
            "allowance_usd": s.allowance_usd,
        }
        for s in statuses
    ]
