"""What the store says each budget has spent in its current window: one SQL query for all budgets.

Spend is `sum(cost_usd)` over the model-call spans of the store's `spans` table, as in
`tokentrail.queries` (so the dashboard, `tokentrail report` and SQL give the same figure);
unpriced calls have a NULL cost and add nothing. It is read from a rollup where one holds the
budget's scope fields (team, feature, tags, project, ...: not user or session), the window's
partial hours or days from the spans (see `tokentrail.queries.source`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from ..queries import MODEL_OPERATIONS, Filters, Where
from ..queries.source import Facts, facts
from ..store import DATABASE
from .model import CompiledBudget
from .periods import Window

__all__ = ["Spend", "as_store", "fetch_fired", "fetch_spend", "scope_sql", "window_facts"]

_NS_PER_US = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
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


def _dt(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // _NS_PER_US)  # exact, as the store keeps µs


class _Bare:
    """A bare clickhouse-connect client seen as a store: its database, no rollups."""

    rollups = False

    def __init__(self, client: Any) -> None:
        self.client = client
        self.database = getattr(client, "database", None) or DATABASE

    def table(self, name: str) -> str:
        return f"{self.database}.{name}"


def as_store(store: Any) -> Any:
    """A Store as it is; a bare client (what older callers pass) wrapped."""
    return store if hasattr(store, "table") else _Bare(store)


def scope_sql(cb: CompiledBudget) -> tuple[str, str]:
    """(conditions, scope key expression) selecting a budget's priced model calls among facts
    (see tokentrail.queries.source); the time window is the facts' own."""
    conds = [_MODEL_CALLS, "has_cost"]
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


def window_facts(store: Any, cb: CompiledBudget, w: Window, *, grain: int | None = None, extra: str = "") -> Facts:
    """The budget's priced model calls in window `w` (and `extra` conditions) as facts."""
    where, _ = scope_sql(cb)
    if extra:
        where = f"{where} AND {extra}"
    fields = {f for f, _ in cb.fixed} | set(cb.star)
    return facts(
        as_store(store),
        Filters(since=_dt(w.start_ns) if w.start_ns > 0 else None, until=None if w.end_ns is None else _dt(w.end_ns)),
        need=("operation", "has_cost", *sorted(fields)),
        conditions=Where(where),
        grain=grain,
        prefix=f"b{cb.index}_",
    )


def _subquery(store: Any, cb: CompiledBudget, w: Window) -> Facts:
    src = window_facts(store, cb, w)
    _, key = scope_sql(cb)
    sql = (
        f"SELECT toUInt32({cb.index}) AS b, {key} AS k, sum(cost_usd) AS spent, "
        f"min(min_timestamp) AS first, sum(spans) AS calls FROM {src.sql} GROUP BY k"
    )
    return Facts(sql, src.params, src.rollup)


def fetch_spend(store: Any, items: Sequence[tuple[CompiledBudget, Window]]) -> dict[tuple[int, tuple[str, ...]], Spend]:
    """{(budget index, scope key): Spend} for every scope value with priced spend in its window.
    `store`: an open Store (reads rollups where it can) or a clickhouse-connect client."""
    if not items:
        return {}
    store = as_store(store)
    subs = [_subquery(store, cb, w) for cb, w in items]
    params: dict[str, Any] = {}
    for s in subs:
        params.update(s.params)
    out: dict[tuple[int, tuple[str, ...]], Spend] = {}
    for b, k, spent, first, calls in store.client.query("\nUNION ALL\n".join(s.sql for s in subs), parameters=params).result_rows:
        if isinstance(first, datetime) and first.tzinfo is None:
            first = first.replace(tzinfo=timezone.utc)
        out[(int(b), tuple(k))] = Spend(Decimal(spent or 0), first, int(calls))
    return out


def fetch_fired(store: Any, since_ns: int) -> set[tuple[str, str, float, int]]:
    """Warn events already recorded (by any process) for periods starting at or after
    `since_ns`: {(budget, scope value, threshold, period start in µs)}."""
    store = as_store(store)
    rows = store.client.query(
        f"SELECT DISTINCT budget, scope_value, threshold, toUnixTimestamp64Micro(period_start) "
        f"FROM {store.table('budget_events')} WHERE event = 'warn' AND threshold IS NOT NULL "
        f"AND period_start >= {_ts(since_ns)}"
    ).result_rows
    return {(str(b), str(s), float(t), int(p)) for b, s, t, p in rows}
