"""The budget_events table as budgets, the CLI and the dashboard read it: recent events, and the
allowance rows (carry, overage) that `tokentrail.budgets.allowances.replay` rebuilds state
from. Values are ClickHouse server-side parameters (`{name:Type}`), never SQL text."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

__all__ = ["budget_events"]


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
        params["since"] = since.astimezone(timezone.utc).replace(tzinfo=None)
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
