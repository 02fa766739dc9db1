"""What the store says each budget has spent in its current window: one SQL query for all budgets.

Spend is `sum(cost_usd)` over the model-call spans of the store's `spans` table, as in
`tokentrail.queries` (so the dashboard, `tokentrail report` and SQL give the same figure);
unpriced calls have a NULL cost and add nothing. It is read from a rollup where one holds the
budget's scope fields (team, feature, tags, project, ...: not user or session), the window's
partial hours or days from the spans (see `tokentrail.queries.source`). The SQL itself is in
`tokentrail.queries.budgets` (server-side parameters).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from ..queries.budgets import Scope, spend_rows
from ..store import DATABASE
from .model import CompiledBudget
from .periods import Window

__all__ = ["Spend", "as_store", "fetch_spend", "scope_of"]

_NS_PER_US = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class Spend:
    spent_usd: Decimal
    first: datetime | None  # the window's first priced span (forecasts for `total` budgets)
    calls: int


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


def scope_of(cb: CompiledBudget, w: Window) -> Scope:
    """What the budget selects in window `w`, as the queries take it."""
    return Scope(cb.index, cb.fixed, cb.star, _dt(w.start_ns) if w.start_ns > 0 else None, None if w.end_ns is None else _dt(w.end_ns))


def fetch_spend(store: Any, items: Sequence[tuple[CompiledBudget, Window]]) -> dict[tuple[int, tuple[str, ...]], Spend]:
    """{(budget index, scope key): Spend} for every scope value with priced spend in its window.
    `store`: an open Store (reads rollups where it can) or a clickhouse-connect client."""
    out: dict[tuple[int, tuple[str, ...]], Spend] = {}
    for b, k, spent, first, calls in spend_rows(as_store(store), [scope_of(cb, w) for cb, w in items]):
        if isinstance(first, datetime) and first.tzinfo is None:
            first = first.replace(tzinfo=timezone.utc)
        out[(int(b), tuple(k))] = Spend(Decimal(spent or 0), first, int(calls))
    return out
