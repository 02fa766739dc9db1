"""`tokentrail status`: is the store reachable (and if not, why), what waits in the spool, what
was set aside, what was lost and its known cost, and each exporting process's last error.

Read from outside the application: the store (and its `lost_spans` table), the spool
directory, and the state files exporters leave in `$TOKENTRAIL_HOME/status/` (store/health.py).
The spool is not ingested here, so its depth is what it is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from ..config import Settings
from . import spool
from .deadline import DeadlineExceeded, Deadlines
from .health import read_all
from .spool import Depth, RejectedFile

__all__ = ["Lost", "Probe", "Status", "StoreState", "gather"]


@dataclass
class StoreState:
    where: str
    reachable: bool
    why: str | None = None  # a plain line; a classifier of ClickHouse errors may refine it
    spans: int | None = None
    budget_events: int | None = None


@dataclass
class Lost:
    """Rows that could be neither stored nor spooled, from `lost_spans` and the spool."""

    rows: int = 0
    spans: int = 0
    model_spans: int = 0
    unpriced_model_spans: int = 0
    cost_usd: Decimal = Decimal(0)
    first: datetime | None = None
    last: datetime | None = None
    last_reason: str = ""
    last_message: str = ""

    def add(self, r: dict[str, Any]) -> None:
        self.rows += int(r.get("rows") or 0)
        self.spans += int(r.get("spans") or 0)
        self.model_spans += int(r.get("model_spans") or 0)
        self.unpriced_model_spans += int(r.get("unpriced_model_spans") or 0)
        self.cost_usd += Decimal(str(r.get("cost_usd") or 0))
        first, last = _dt(r.get("first_lost")), _dt(r.get("last_lost"))
        if first is not None and (self.first is None or first < self.first):
            self.first = first
        if last is not None and (self.last is None or last >= self.last):
            self.last = last
            self.last_reason = str(r.get("reason") or "")
            self.last_message = str(r.get("message") or "")


@dataclass
class Status:
    settings: Settings
    store: StoreState
    spool: Depth
    rejected: list[RejectedFile]
    lost: Lost
    exporters: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last_error(self) -> dict[str, Any] | None:
        """The most recent export error any process recorded."""
        errors = [e for e in self.exporters if e.get("last_error")]
        return max(errors, key=lambda e: str(e.get("last_error_at") or "")) if errors else None

    def to_json(self) -> dict[str, Any]:
        s = self.settings
        return {
            "store": {
                "where": self.store.where,
                "reachable": self.store.reachable,
                "why": self.store.why,
                "spans": self.store.spans,
                "budget_events": self.store.budget_events,
            },
            "spool": {
                "dir": str(s.spool_dir),
                "files": self.spool.files,
                "bytes": self.spool.bytes,
                "oldest": _iso_ns(self.spool.oldest_ns),
                "max_bytes": s.spool_max_bytes,
            },
            "set_aside": [{"path": str(r.path), "bytes": r.bytes, "error": r.error} for r in self.rejected],
            "lost": {
                "rows": self.lost.rows,
                "spans": self.lost.spans,
                "model_spans": self.lost.model_spans,
                "unpriced_model_spans": self.lost.unpriced_model_spans,
                "cost_usd": str(self.lost.cost_usd),
                "first": self.lost.first.isoformat() if self.lost.first else None,
                "last": self.lost.last.isoformat() if self.lost.last else None,
                "last_reason": self.lost.last_reason or None,
            },
            "last_export_error": self.last_error,
            "exporters": self.exporters,
        }


def _dt(v: Any) -> datetime | None:
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=timezone.utc)
    if isinstance(v, str) and v:
        try:
            d = datetime.fromisoformat(v.replace(" ", "T"))
        except ValueError:
            return None
        return d if d.tzinfo else d.replace(tzinfo=timezone.utc)
    return None


def _iso_ns(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat(timespec="seconds")


Probe = Callable[[Any], tuple[int, int, list[dict[str, Any]]]]


def _probe(settings: Settings, lock_timeout: float, probe: Probe) -> tuple[int, int, list[dict[str, Any]]]:
    from . import open_store

    with open_store(settings, ingest=False, lock_timeout=lock_timeout) as store:
        return probe(store)


def _why(e: BaseException, settings: Settings) -> str:
    from . import problem
    from .lock import LockTimeout

    if isinstance(e, LockTimeout):
        return f"busy: another process holds the embedded store ({e})"
    found = problem(e, settings)
    return f"{found.kind}: {found.message}"


def gather(settings: Settings, *, probe: Probe, timeout_s: float = 5.0) -> Status:
    """The status, asking the store for at most `timeout_s` (a hung server is a reason, not a
    hang). probe(store) -> (spans, budget events, lost_spans rows): its SQL lives with the read
    side's (tokentrail.queries.status, which calls this)."""
    state = StoreState(settings.public_store, reachable=False)
    lost = Lost()
    runner = Deadlines("tokentrail-status")
    try:
        spans, events, lost_rows = runner.run(lambda: _probe(settings, timeout_s, probe), timeout_s + 1)
        state.reachable, state.spans, state.budget_events = True, spans, events
        for r in lost_rows:
            lost.add(r)
    except DeadlineExceeded:
        state.why = f"no answer within {timeout_s:g} s"
    except Exception as e:  # status reports any failure as the store's state
        state.why = _why(e, settings)
    finally:
        runner.close()
    # loss records still in the spool (not yet in the store)
    for f in spool.pending(settings.spool_dir):
        if f.table != "lost_spans":
            continue
        try:
            for line in f.read().splitlines():
                lost.add(json.loads(line))
        except (OSError, ValueError):
            continue
    return Status(
        settings=settings,
        store=state,
        spool=spool.depth(settings.spool_dir),
        rejected=spool.rejected(settings.spool_dir),
        lost=lost,
        exporters=read_all(settings.home),
    )
