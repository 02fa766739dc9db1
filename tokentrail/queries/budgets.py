"""The SQL budgets run against the store: each budget's spend in its window (one query for all
budgets), a budget's burn-down, and the budget_events rows
(recent events, and the allowance rows `tokentrail.budgets.allowances.replay` rebuilds state
from). Values are ClickHouse server-side parameters (`{name:Type}`), never SQL text; the
scope's field names are attribution fields (validated by the budget), the only identifiers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .filters import MODEL_OPERATIONS, Filters, Where, naive_utc
from .source import Facts, facts

__all__ = ["Scope", "budget_events", "burndown_rows", "scope_facts", "spend_rows"]

_MODEL_CALLS = f"operation IN ({', '.join(repr(op) for op in MODEL_OPERATIONS)})"


@dataclass(frozen=True)
class Scope:
    """What a budget selects: its index (names its parameters), fixed values, "*" fields, and
    the window [since, until) (None: open)."""

    index: int
    fixed: tuple[tuple[str, str], ...]
    star: tuple[str, ...]
    since: datetime | None
    until: datetime | None


def _where(scope: Scope, values: Sequence[str] = ()) -> tuple[Where, str]:
    """(conditions, scope key expression); `values` pin the "*" fields (one scope value)."""
    p = f"b{scope.index}_scope_"
    conds = [_MODEL_CALLS, "has_cost"]
    params: dict[str, Any] = {}
    pinned = list(zip(scope.star, values, strict=False))
    for j, (f, v) in enumerate([*scope.fixed, *pinned]):
        name = f"{p}{j}"
        conds.append(f"has(tags, {{{name}:String}})" if f == "tags" else f"{f} = {{{name}:String}}")
        params[name] = v
    parts = []
    for f in scope.star:
        if f == "tags":
            parts.append("arrayJoin(tags)")
        else:
            parts.append(f"toString({f})")
            conds.append(f"{f} != ''")
    key = f"[{', '.join(parts)}]" if parts else "CAST([], 'Array(String)')"
    return Where(" AND ".join(conds), params), key


def scope_facts(store: Any, scope: Scope, *, grain: int | None = None, values: Sequence[str] = ()) -> tuple[Facts, str]:
    """The budget's priced model calls in its window as facts, and its scope key expression."""
    where, key = _where(scope, values)
    fields = {f for f, _ in scope.fixed} | set(scope.star)
    src = facts(
        store,
        Filters(since=scope.since, until=scope.until),
        need=("operation", "has_cost", *sorted(fields)),
        conditions=where,
        grain=grain,
        prefix=f"b{scope.index}_",
    )
    return src, key


def spend_rows(store: Any, scopes: Sequence[Scope]) -> list[tuple[Any, ...]]:
    """(budget index, scope key, spent, first timestamp, calls) per scope value with priced
    spend, for every budget at once (one UNION ALL)."""
    if not scopes:
        return []
    sqls: list[str] = []
    params: dict[str, Any] = {}
    for scope in scopes:
        src, key = scope_facts(store, scope)
        sqls.append(
            f"SELECT toUInt32({int(scope.index)}) AS b, {key} AS k, sum(cost_usd) AS spent, "
            f"min(min_timestamp) AS first, sum(spans) AS calls FROM {src.sql} GROUP BY k"
        )
        params.update(src.params)
    return list(store.client.query("\nUNION ALL\n".join(sqls), parameters=params).result_rows)


def burndown_rows(store: Any, scope: Scope, *, values: Sequence[str], tz: str | None, grain: int) -> list[tuple[Any, ...]]:
    """(bucket start, spend in it) through the window: by hour (tz None), else by day in `tz`."""
    src, _ = scope_facts(store, scope, grain=grain, values=values)
    params = dict(src.params)
    if tz is None:
        unit = "toStartOfHour(timestamp)"
    else:
        unit = "toStartOfDay(timestamp, {burndown_tz:String})"
        params["burndown_tz"] = tz
    sql = f"SELECT toUnixTimestamp({unit}) AS t, sum(cost_usd) FROM {src.sql} GROUP BY t ORDER BY t"
    return list(store.client.query(sql, parameters=params).result_rows)


def budget_events(
    store: Any,
    *,
    budget: str | None = None,
    events: Sequence[str] | None = None,
    since: datetime | None = None,
    limit: int | None = 200,
    oldest_first: bool = False,
) -> list[dict[str, Any]]:
    """Rows of `budget_events` as dicts: newest first (or oldest first), at most `limit`."""
    conds = ["1"]
    params: dict[str, Any] = {}
    if budget is not None:
        conds.append("budget = {budget:String}")
        params["budget"] = budget
    if events is not None:
        conds.append("event IN {events:Array(String)}")
        params["events"] = list(events)
    if since is not None:
        conds.append("timestamp >= {since:DateTime64(6, 'UTC')}")
        params["since"] = naive_utc(since)
    order = "ASC" if oldest_first else "DESC"
    tail = ""
    if limit is not None:
        tail = " LIMIT {limit:UInt64}"
        params["limit"] = int(limit)
    res = store.client.query(
        f"SELECT * FROM {store.table('budget_events')} WHERE {' AND '.join(conds)} ORDER BY timestamp {order}, event_id{tail}",
        parameters=params,
    )
    return [dict(zip(res.column_names, r, strict=True)) for r in res.result_rows]
