"""The ledger's holes: rows an exporter could neither deliver nor spool, counted and recorded.

A loss happens only at a hard limit: the spool at its size cap, a disk that refuses writes.
Each one is counted here with what is known of it (spans, model-call spans, their known cost,
unpriced calls), logged at most once a minute, shown by `tokentrail status` (store/health.py)
and recorded in the store as a `tokentrail.lost_spans` row per process, table and reason.
That row travels through the spool like any batch, but the cap does not apply to it (it is a
few hundred bytes a minute), so it reaches the store even while the server is down.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .. import clock
from .. import semconv as sc
from ..store import spool
from ..store.health import ExportHealth
from ..usage import cost_or_none
from .rows import _ts, encode

logger = logging.getLogger("tokentrail.exporter")

LOG_INTERVAL_S = 60.0
RECORD_INTERVAL_S = 60.0
_MODEL_OPERATIONS = frozenset((sc.OP_CHAT, sc.OP_TEXT_COMPLETION, sc.OP_EMBEDDINGS))


@dataclass
class Hole:
    """Rows of one table lost for one reason: how many, and what they are known to have cost."""

    table: str
    reason: str
    message: str = ""
    rows: int = 0
    spans: int = 0
    model_spans: int = 0
    unpriced_model_spans: int = 0
    cost_usd: Decimal = Decimal(0)
    first_ns: int = 0
    last_ns: int = 0

    @classmethod
    def of(cls, table: str, reason: str, message: str, rows: Sequence[Mapping[str, Any]] | int, now_ns: int) -> Hole:
        """The hole `rows` make (encoded rows, or only their count when nothing more is known)."""
        h = cls(table, reason, message, first_ns=now_ns, last_ns=now_ns)
        h.rows = rows if isinstance(rows, int) else len(rows)
        if table != "spans":
            return h
        h.spans = h.rows
        for r in () if isinstance(rows, int) else rows:
            if r.get("operation") in _MODEL_OPERATIONS:
                h.model_spans += 1
                cost = cost_or_none(r.get("cost_usd"))
                if cost is None:
                    h.unpriced_model_spans += 1
                else:
                    h.cost_usd += cost
        return h

    def merge(self, other: Hole) -> None:
        self.rows += other.rows
        self.spans += other.spans
        self.model_spans += other.model_spans
        self.unpriced_model_spans += other.unpriced_model_spans
        self.cost_usd += other.cost_usd
        self.first_ns = min(self.first_ns or other.first_ns, other.first_ns or self.first_ns)
        self.last_ns = max(self.last_ns, other.last_ns)
        self.message = other.message or self.message


class Losses:
    """Counts losses (thread-safe, never raises); `record()` writes what is pending to the spool."""

    def __init__(self, spool_dir: Any, health: ExportHealth, *, service_name: str = "", project: str = "") -> None:
        self.spool_dir = spool_dir
        self.health = health
        self.service_name = service_name
        self.project = project
        self.total = Hole("*", "*")  # everything this process lost
        self._pending: dict[tuple[str, str], Hole] = {}
        self._lock = threading.Lock()
        self._last_log = -LOG_INTERVAL_S
        self._unlogged = 0
        self._last_record = time.monotonic()

    def add(self, table: str, rows: Sequence[Mapping[str, Any]] | int, reason: str, message: str) -> None:
        """Count rows that will never reach the store."""
        hole = Hole.of(table, reason, message, rows, clock.now_ns())
        with self._lock:
            self._pending.setdefault((table, reason), Hole(table, reason)).merge(hole)
            self.total.merge(hole)
            self._unlogged += hole.rows
            log_now = time.monotonic() - self._last_log >= LOG_INTERVAL_S
            if log_now:
                self._last_log = time.monotonic()
                n, self._unlogged = self._unlogged, 0
            totals = self.totals()
        if log_now:
            logger.error(
                "tokentrail: LOST %d %s row(s) that could be neither stored nor spooled (%s: %s); so far this "
                "process lost %d spans, %d model calls, $%s of known cost; see `tokentrail status`",
                n, table, reason, message, totals["spans"], totals["model_spans"], totals["cost_usd"],
            )  # fmt: skip
        self.health.record_loss(totals)

    def totals(self) -> dict[str, Any]:
        t = self.total
        return {
            "rows": t.rows,
            "spans": t.spans,
            "model_spans": t.model_spans,
            "unpriced_model_spans": t.unpriced_model_spans,
            "cost_usd": str(t.cost_usd),
        }

    def record(self, *, force: bool = False) -> None:
        """Write pending holes as `lost_spans` rows to the spool (at most once a minute unless
        forced); what cannot be written stays pending for the next call."""
        with self._lock:
            if not self._pending or (not force and time.monotonic() - self._last_record < RECORD_INTERVAL_S):
                return
            holes, self._pending = list(self._pending.values()), {}
            self._last_record = time.monotonic()
        now = clock.now_ns()
        rows = [
            {
                "timestamp": _ts(now),
                "first_lost": _ts(h.first_ns),
                "last_lost": _ts(h.last_ns),
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "service_name": self.service_name,
                "project": self.project,
                "table_name": h.table,
                "reason": h.reason,
                "rows": h.rows,
                "spans": h.spans,
                "model_spans": h.model_spans,
                "unpriced_model_spans": h.unpriced_model_spans,
                "cost_usd": format(h.cost_usd, "f"),
                "message": h.message[:1000],
                "record_id": spool.new_batch_id(),
            }
            for h in holes
        ]
        try:
            spool.write(self.spool_dir, "lost_spans", spool.new_batch_id(), encode(rows))  # no cap: tiny
        except OSError as e:
            logger.error("tokentrail: could not record %d lost-spans row(s) in the spool (%s); will retry", len(rows), e)
            with self._lock:
                for h in holes:
                    self._pending.setdefault((h.table, h.reason), Hole(h.table, h.reason)).merge(h)

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self._pending = {}
        self.total = Hole("*", "*")
