"""What the store says each budget has spent in its current window: one SQL query for all budgets.

Spend is `sum(cost_usd)` over the model-call spans of `tokentrail.spans`, as in
`tokentrail.queries` (so the dashboard, `tokentrail report` and SQL give the same figure);
unpriced calls have a NULL cost and add nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from ..queries import MODEL_OPERATIONS
from ..store import DATABASE
from .model import CompiledBudget
from .periods import Window

__all__ = ["Spend", "fetch_fired", "fetch_spend", "spend_sql"]

_NS_PER_US = 1000
_MODEL_CALLS = f"operation IN ({', '.join(repr(op) for op in MODEL_OPERATIONS)})"


@dataclass(frozen=True, slots=True)
class Spend:
    spent_usd: Decimal
    first: datetime | None  # the window's first priced span (forecasts for `total` budgets)
    calls: int


def _lit(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _ts(ns: int) -> str:
    return f"fromUnixTimestamp64Micro(toInt64({ns // _NS_PER_US}), 'UTC')"


def scope_sql(cb: CompiledBudget, w: Window) -> tuple[str, str]:
    """(WHERE conditions, scope key expression) selecting a budget's spans in window `w`."""
    conds = [_MODEL_CALLS, "cost_usd IS NOT NULL"]
    if w.start_ns > 0:
        conds.append(f"timestamp >= {_ts(w.start_ns)}")
    if w.end_ns is not None:
        conds.append(f"timestamp < {_ts(w.end_ns)}")
    for f, v in cb.fixed:
        conds.append(f"has(tags, {_lit(v)})" if f == "tags" else f"{f} = {_lit(v)}")
    parts = []
    for f in cb.star:
        if f == "tags":
            parts.append("arrayJoin(tags)")
        else:
            parts.append(f"toString({f})")
            conds.append(f"{f} != ''")
    key = f"[{', '.join(parts)}]" if parts else "CAST([], 'Array(String)')"
    return " AND ".join(conds), key


def _subquery(cb: CompiledBudget, w: Window) -> str:
    where, key = scope_sql(cb, w)
    return (
        f"SELECT toUInt32({cb.index}) AS b, {key} AS k, sum(cost_usd) AS spent, "
        f"min(timestamp) AS first, count() AS calls FROM {DATABASE}.spans WHERE {where} GROUP BY k"
    )


def spend_sql(items: Sequence[tuple[CompiledBudget, Window]]) -> str:
    return "\nUNION ALL\n".join(_subquery(cb, w) for cb, w in items)


def fetch_spend(client: Any, items: Sequence[tuple[CompiledBudget, Window]]) -> dict[tuple[int, tuple[str, ...]], Spend]:
    """{(budget index, scope key): Spend} for every scope value with priced spend in its window."""
    if not items:
        return {}
    out: dict[tuple[int, tuple[str, ...]], Spend] = {}
    for b, k, spent, first, calls in client.query(spend_sql(items)).result_rows:
        if isinstance(first, datetime) and first.tzinfo is None:
            first = first.replace(tzinfo=timezone.utc)
        out[(int(b), tuple(k))] = Spend(Decimal(spent or 0), first, int(calls))
    return out


def fetch_fired(client: Any, since_ns: int) -> set[tuple[str, str, float, int]]:
    """Warn events already recorded (by any process) for periods starting at or after
    `since_ns`: {(budget, scope value, threshold, period start in µs)}."""
    rows = client.query(
        f"SELECT DISTINCT budget, scope_value, threshold, toUnixTimestamp64Micro(period_start) "
        f"FROM {DATABASE}.budget_events WHERE event = 'warn' AND threshold IS NOT NULL "
        f"AND period_start >= {_ts(since_ns)}"
    ).result_rows
    return {(str(b), str(s), float(t), int(p)) for b, s, t, p in rows}
