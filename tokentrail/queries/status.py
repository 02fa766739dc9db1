"""`tokentrail status`'s questions of the store: row counts and the recorded losses. The rest
of the status (spool, set-aside files, exporters' last errors) is local: tokentrail.store.status."""

from __future__ import annotations

from typing import Any

from ..config import Settings
from ..store import Store
from ..store import status as _status

__all__ = ["gather", "lost_records", "row_counts"]


def row_counts(store: Store) -> tuple[int, int]:
    """Spans and budget events stored. count(): exact on a Distributed table too (system.tables
    has no rows for one)."""
    spans = store.rows(f"SELECT count() FROM {store.table('spans')}")[0][0]
    events = store.rows(f"SELECT count() FROM {store.table('budget_events')}")[0][0]
    return int(spans or 0), int(events or 0)


def lost_records(store: Store) -> list[dict[str, Any]]:
    """Every `lost_spans` record (rows an exporter could neither deliver nor spool)."""
    res = store.query(
        "SELECT rows, spans, model_spans, unpriced_model_spans, cost_usd, first_lost, last_lost, reason, message "
        f"FROM {store.table('lost_spans')}"
    )
    return [dict(zip(res.column_names, r, strict=True)) for r in res.result_rows]


def _probe(store: Store) -> tuple[int, int, list[dict[str, Any]]]:
    spans, events = row_counts(store)
    return spans, events, lost_records(store)


def gather(settings: Settings, *, timeout_s: float = 5.0) -> _status.Status:
    """The status (see tokentrail.store.status.gather), asking the store these questions."""
    return _status.gather(settings, probe=_probe, timeout_s=timeout_s)
