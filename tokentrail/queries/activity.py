"""What the CLI says after it wrote: row counts per table, budget events and blocked calls since a time."""

from __future__ import annotations

from datetime import datetime

from ..store import Store
from .filters import MODEL_OPERATIONS, naive_utc

TABLES = ("spans", "budget_events", "lost_spans")


def row_counts(store: Store, tables: tuple[str, ...] = TABLES) -> dict[str, int]:
    """Rows in each table. count(): exact on a Distributed table too (system.tables has no rows for one)."""
    return {t: int(store.rows(f"SELECT count() FROM {store.table(t)}")[0][0]) for t in tables}


def budget_event_counts(store: Store, since: datetime) -> dict[str, int]:
    """How many budget events of each kind (warn, block, alert, ...) since `since`."""
    sql = f"SELECT event, count() FROM {store.table('budget_events')} WHERE timestamp >= {{since:DateTime64(6, 'UTC')}} GROUP BY event"
    return {str(e): int(n) for e, n in store.rows(sql, {"since": naive_utc(since)})}


def blocked_calls_by_model(store: Store, since: datetime) -> list[tuple[str, int]]:
    """Model calls a budget refused since `since`, per requested model, most first."""
    sql = (
        f"SELECT request_model, count() AS n FROM {store.table('spans')} "
        "WHERE timestamp >= {since:DateTime64(6, 'UTC')} AND has({ops:Array(String)}, operation) "
        "AND error_type = 'BudgetExceeded' GROUP BY request_model ORDER BY n DESC, request_model"
    )
    return [
        (str(m), int(n))
        for m, n in store.rows(sql, {"since": naive_utc(since), "ops": list(MODEL_OPERATIONS)})
    ]
