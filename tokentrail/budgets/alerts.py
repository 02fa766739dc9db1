"""Budget events and where they go: the `tokentrail.budget_events` table, Python logging
(logger "tokentrail.budgets"), webhooks and callables.

Nothing here runs on the call path: the manager queues events under its lock and its
background thread (or `flush()`) delivers them. Webhooks have their own thread and a bounded
queue, so a slow or dead endpoint delays nothing but other webhooks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

__all__ = [
    "BLOCK",
    "EVENTS",
    "RESET",
    "UNPRICED",
    "WARN",
    "BudgetEvent",
    "WebhookSender",
    "add_alert_handler",
    "encode_events",
]

logger = logging.getLogger("tokentrail.budgets")

WARN, BLOCK, RESET, UNPRICED, FORECAST = "warn", "block", "reset", "unpriced", "forecast"
CARRY, OVERAGE, LOAN, REPAY = "carry", "overage", "loan", "repay"  # allowances.py
EVENTS = (WARN, BLOCK, RESET, UNPRICED, FORECAST, CARRY, OVERAGE, LOAN, REPAY)
_Q = Decimal("0.000000001")


@dataclass(frozen=True, slots=True)
class BudgetEvent:
    """One budget event, as stored in `tokentrail.budget_events` and passed to alert callables.

    event: `warn` (spend reached `threshold` of the limit; 1.0 = the limit), `block` (a call
    was refused), `reset` (a new calendar period started), `unpriced` (a call to a model with
    no price went through uncounted, or was refused when the budget says unpriced="block"),
    `forecast` (at the period's rate so far, spend reaches the limit before the period ends:
    once per period; estimated_cost_usd is the projected period-end spend, the message names
    the projected date), `carry` (rollover: the unused spend carried into this period, in
    estimated_cost_usd), `overage` (a call past the included allowance: its overage price in
    estimated_cost_usd), `loan` (a pool member borrowed: the amount), `repay` (a member's debt
    repaid from this period: the amount).
    event_id: for once-per-period events (warn, reset) it is derived from budget, scope value,
    period and threshold, so rows written by several processes for the same alert share it.
    """

    timestamp: datetime
    budget: str
    scope_value: str
    event: str
    threshold: float | None
    spent_usd: Decimal
    limit_usd: Decimal
    estimated_cost_usd: Decimal | None
    period_start: datetime
    project: str
    model: str
    message: str
    event_id: str
    alert: bool = True  # False for repeated blocks: stored, not alerted again

    def row(self) -> dict[str, Any]:
        return {
            "timestamp": _ts(self.timestamp),
            "budget": self.budget,
            "scope_value": self.scope_value,
            "event": self.event,
            "threshold": self.threshold,
            "spent_usd": str(_money(self.spent_usd)),
            "limit_usd": str(_money(self.limit_usd)),
            "estimated_cost_usd": None if self.estimated_cost_usd is None else str(_money(self.estimated_cost_usd)),
            "period_start": _ts(self.period_start),
            "project": self.project,
            "model": self.model,
            "message": self.message,
            "event_id": self.event_id,
        }

    def payload(self) -> dict[str, Any]:
        """The webhook body: the row, with `text` for Slack-style incoming webhooks."""
        body = self.row()
        body["timestamp"] = self.timestamp.isoformat()
        body["period_start"] = self.period_start.isoformat()
        body["text"] = f"tokentrail: {self.message}"
        return body


def _money(d: Decimal) -> Decimal:
    # the store's Decimal(18, 9); worst-case estimates can carry more digits
    return d.quantize(_Q)


def _ts(d: datetime) -> str:
    return d.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def event_id(*parts: Any) -> str:
    if not parts:
        return uuid.uuid4().hex
    return hashlib.sha1("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]


def encode_events(events: Iterable[BudgetEvent]) -> bytes:
    from ..exporters.rows import encode

    return encode(e.row() for e in events)


def log_event(e: BudgetEvent) -> None:
    level = logging.INFO if e.event == RESET else logging.WARNING
    if e.event == BLOCK and not e.alert:
        level = logging.DEBUG
    logger.log(level, "tokentrail budget: %s", e.message)


# -- callables ---------------------------------------------------------------------------------

_handlers: list[Callable[[BudgetEvent], Any]] = []
_handlers_lock = threading.Lock()


def add_alert_handler(fn: Callable[[BudgetEvent], Any]) -> Callable[[], None]:
    """Call `fn(event)` for every budget alert of every budget in this process (off the call
    path, on tokentrail's budget thread). Returns a function that removes it again."""
    with _handlers_lock:
        _handlers.append(fn)

    def remove() -> None:
        with _handlers_lock:
            if fn in _handlers:
                _handlers.remove(fn)

    return remove


def global_handlers() -> list[Callable[[BudgetEvent], Any]]:
    with _handlers_lock:
        return list(_handlers)


def call_handlers(e: BudgetEvent, handlers: Iterable[Callable[[BudgetEvent], Any]]) -> None:
    for fn in handlers:
        try:
            fn(e)
        except Exception:  # a user's alert callable must not stop tokentrail's thread
            logger.exception("tokentrail: budget alert handler %r failed", fn)


# -- webhooks ----------------------------------------------------------------------------------


class WebhookSender:
    """POSTs JSON alerts from one daemon thread. `send` never blocks: when the queue is full
    (an endpoint that hangs) alerts are dropped with a log line."""

    def __init__(self, *, timeout: float = 5.0, max_queue: int = 1000) -> None:
        self.timeout = timeout
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    def send(self, url: str, body: dict[str, Any]) -> None:
        data = json.dumps(body, default=str).encode()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tokentrail-webhooks", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait((url, data))
        except queue.Full:
            self.dropped += 1
            logger.warning("tokentrail: budget webhook queue full; alert for %s dropped", url)

    def _run(self) -> None:
        from .host import suppressed

        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                with suppressed():  # the user's urllib instrumentation sees none of this
                    self._post(*item)
            finally:
                self._queue.task_done()

    def _post(self, url: str, data: bytes) -> None:
        from ..version import VERSION

        req = urllib.request.Request(
            url,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": f"tokentrail/{VERSION}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 (user's URL)
                resp.read()
            self.sent += 1
        except Exception as e:  # the user's endpoint: counted and logged, never reaches a call
            self.failed += 1
            logger.warning("tokentrail: budget webhook %s failed: %s", url, e)

    def close(self, timeout: float = 1.0) -> None:
        """Stop after what is queued, waiting at most `timeout` seconds (a dead endpoint must
        not hold up the process's exit)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass
        thread.join(timeout)
