"""Budget events, queued under the manager's lock on the call path and delivered off it (by
the budget thread or `flush()`): warn thresholds, blocks, unpriced models, period resets."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, cast

from ..errors import AllowanceExceeded
from ..errors import format_usd as usd
from . import alerts
from .alerts import BLOCK, FORECAST, RESET, UNPRICED, WARN, BudgetEvent, WebhookSender
from .allowances import CARRY, LOAN, OVERAGE, REPAY
from .host import Host, suppressed
from .instances import C, Inst, dec
from .ledger import Refused
from .model import CompiledBudget
from .periods import CALENDAR, NS, ROLLING, Window, _zone, window

__all__ = ["Events"]

ZERO = Decimal(0)
_MAX = 2**63
_DAY_NS = 86400 * NS
_BLOCK_REALERT_NS = 3600 * NS  # rolling/total budgets have no period: re-alert a block hourly


class Events:
    """The BudgetManager's events (a mixin: it uses the manager's lock, clock and exporter)."""

    compiled: list[CompiledBudget]
    settings: Any
    _rt: Host
    _lock: threading.Lock
    _drain_lock: threading.Lock
    _events: list[tuple[CompiledBudget, BudgetEvent]]
    _periods: dict[int, Window]
    _wake: threading.Event
    _webhooks: WebhookSender
    _ledger: Any

    def _period_start_ns(self, inst: Inst, now: int) -> int:
        p = inst.cb.budget.period
        if p in ROLLING:
            return now - ROLLING[p]
        return inst.window_key if p in CALENDAR else 0

    def _event(
        self,
        inst: Inst,
        kind: str,
        now: int,
        *,
        message: str,
        threshold: float | None = None,
        estimated: Decimal | None = None,
        spent: Decimal | None = None,
        model: str | None = None,
        eid: str | None = None,
        alert: bool = True,
    ) -> None:
        cb = inst.cb
        ev = BudgetEvent(
            timestamp=datetime.fromtimestamp(now / NS, tz=timezone.utc),
            budget=cb.budget.name,
            scope_value=inst.scope_value,
            event=kind,
            threshold=threshold,
            spent_usd=inst.spent if spent is None else spent,
            limit_usd=cb.limit,
            estimated_cost_usd=estimated,
            period_start=datetime.fromtimestamp(self._period_start_ns(inst, now) / NS, tz=timezone.utc),
            project=self.settings.project,
            model=model or "",
            message=message,
            event_id=eid or alerts.event_id(),
            alert=alert,
        )
        self._events.append((cb, ev))
        self._wake.set()

    def _claim_forecast(self, inst: Inst, now: int) -> None:
        """One `forecast` alert per period with the projected date, whichever process sees it
        first: the ledger's claim is atomic across every process on it."""
        claimed = self._ledger.claim_forecast(inst, now)
        with self._lock:
            # the winner alerts even when a losing thread of this process took the lock first
            inst.forecast_alerted = True
            if not claimed:
                return
            cb = inst.cb
            spent, limit, elapsed, length = inst.spent_n, inst.limit_n, now - inst.lo, inst.hi - inst.lo
            what = "limit" if limit == cb.limit_n else "included allowance"  # overage blocks past the allowance
            projected = dec(spent * length // elapsed)
            at = datetime.fromtimestamp((inst.lo + limit * elapsed // spent) / NS, tz=_zone(cb.budget.timezone))
            self._event(
                inst,
                FORECAST,
                now,
                estimated=projected,
                message=f"budget {self._label(inst)} is forecast to reach its ${usd(dec(limit))} {what} on "
                f"{at:%Y-%m-%d %H:%M %Z} (${usd(projected)} by the end of this {cb.budget.period} at the rate so far; "
                f"${usd(inst.spent)} spent)",
                eid=alerts.event_id(cb.budget.name, inst.scope_value, FORECAST, self._period_start_ns(inst, now)),
            )

    @staticmethod
    def _label(inst: Inst) -> str:
        return f"{inst.cb.budget.name!r}" + (f" [{inst.scope_value}]" if inst.scope_value else "")

    def _fire_thresholds(self, inst: Inst, before: int, after: int, now: int) -> None:
        """Alert thresholds before..after-1: the ledger counted them as newly reached (once in
        the period, whichever process reached them)."""
        cb = inst.cb
        spent = inst.spent
        for i in range(before, after):
            t = cb.thresholds[i][0]
            self._event(
                inst,
                WARN,
                now,
                threshold=t,
                spent=spent,
                message=f"budget {self._label(inst)} reached {t:.0%} of ${usd(cb.limit)} "
                f"(${usd(spent)} spent this {cb.budget.period})",
                eid=alerts.event_id(cb.budget.name, inst.scope_value, WARN, t, self._period_start_ns(inst, now)),
            )

    def _note_period(self, cb: CompiledBudget, w: Window, now: int) -> None:
        """A calendar budget entered a new period: one `reset` event per budget (not per value)."""
        prev = self._periods.get(cb.index)
        if prev is not None and w.start_ns < prev.start_ns:
            return  # the clock went back into an earlier period (a replay): nothing new started
        self._periods[cb.index] = w
        if prev is None or prev.key == w.key:
            return
        probe = Inst(cb, (), b"", 0)
        probe.window_key = w.key
        probe.scope_value = "*" if cb.star else ""
        tz = _zone(cb.budget.timezone)
        self._event(
            probe,
            RESET,
            now,
            spent=ZERO,
            message=f"budget {cb.budget.name!r}: a new {cb.budget.period} started ({w.start.astimezone(tz).isoformat()})",
            eid=alerts.event_id(cb.budget.name, RESET, w.key),
        )

    def _check_periods(self) -> None:
        now = self._rt.now_ns()
        with self._lock:
            for cb in self.compiled:
                prev = self._periods.get(cb.index)
                if prev is not None and not prev.start_ns <= now < (prev.end_ns or _MAX):
                    self._note_period(cb, window(cb.budget.period, cb.budget.timezone, now), now)

    # -- events on the call path (queued under the manager's lock) ---------------------------------

    def _queue_block(self, inst: Inst, amount_n: int, committed_n: int, model: str | None, now: int, note: str = "") -> None:
        # every refusal is a row; alerts: once per period (hourly for rolling/total budgets)
        cb = inst.cb
        last = inst.block_alerted_at
        alert = last is None or (cb.budget.period not in CALENDAR and now - last >= _BLOCK_REALERT_NS)
        if alert:
            inst.block_alerted_at = now
        amount, committed = dec(amount_n), dec(committed_n)
        self._event(
            inst,
            BLOCK,
            now,
            estimated=amount,
            spent=committed,
            model=model,
            message=f"budget {self._label(inst)} blocked a call to {model or 'an unknown model'} "
            f"(up to ${usd(amount)}): ${usd(committed)} of ${usd(cb.limit)} committed this {cb.budget.period}{note}",
            alert=alert,
        )

    def _queue_unpriced(self, inst: Inst, model: str | None, now: int, *, blocked: bool) -> None:
        inst.unpriced_models.add(model or "")
        what = "refused (unpriced='block')" if blocked else "let through uncounted"
        self._event(
            inst,
            UNPRICED,
            now,
            model=model,
            message=f"budget {self._label(inst)}: model {model or '(unknown)'!r} has no price; the call was "
            f"{what}; add a price override to count it",
        )

    def _past_allowance(self, inst: Inst, amount_n: int, r: Refused, model: str | None, now: int) -> AllowanceExceeded:
        """A call refused at a budget's allowance (overage "block" or "downgrade"): a `block`
        row naming the overage price, and the exception the caller gets."""
        cb = inst.cb
        b = cb.budget
        limit_n = r.limit if r.limit >= 0 else inst.limit_n
        beyond = amount_n - max(0, limit_n - r.committed)
        rate = cast(Decimal, b.overage_rate)
        price = C.multiply(dec(beyond), rate)
        then = f"; use {b.downgrade_to!r}" if b.overage == "downgrade" else ""
        with self._lock:
            self._queue_block(
                inst, amount_n, r.committed, model, now,
                note=f"; past the included ${usd(dec(limit_n))}, up to ${usd(price)} in overage at x{rate}{then}",
            )  # fmt: skip
        return AllowanceExceeded(
            b.name,
            scope_value=inst.scope_value or None,
            spent_usd=dec(r.committed),
            limit_usd=dec(limit_n),
            estimated_cost_usd=dec(amount_n),
            model=model,
            overage_usd=price,
            overage_rate=rate,
            downgrade_to=b.downgrade_to if b.overage == "downgrade" else None,
        )

    def _queue_overage(self, inst: Inst, over_n: int, spent_n: int, cost_n: int, carry_n: int, model: str | None, now: int) -> None:
        """A call that went past the allowance (overage "warn"): one row per call, its overage
        priced at the rate; the call that crossed the allowance alerts."""
        cb = inst.cb
        rate = cast(Decimal, cb.budget.overage_rate)
        price = C.multiply(dec(over_n), rate)
        included = (cb.allowance_n or 0) + carry_n
        self._event(
            inst,
            OVERAGE,
            now,
            estimated=price,
            spent=dec(spent_n),
            model=model,
            message=f"budget {self._label(inst)}: ${usd(dec(over_n))} of a call to {model or 'a model'} is past the included "
            f"${usd(dec(included))}: ${usd(price)} in overage at x{rate} (${usd(dec(spent_n))} spent this {cb.budget.period})",
            alert=spent_n - cost_n < included,
        )

    def _queue_loan(self, inst: Inst, pool: CompiledBudget, loan_n: int, spent_n: int, carry_n: int, model: str | None, now: int) -> None:
        """A pool's member spent past its own limit: the part past it is borrowed, a `loan` row."""
        cb = inst.cb
        own = dec(cb.limit_n + carry_n)
        self._event(
            inst,
            LOAN,
            now,
            estimated=dec(loan_n),
            spent=dec(spent_n),
            model=model,
            message=f"budget {self._label(inst)} borrowed ${usd(dec(loan_n))} from pool {pool.budget.name!r} for a call to "
            f"{model or 'a model'} (${usd(dec(spent_n))} spent of its own ${usd(own)}; it may owe up to ${usd(dec(cb.lend_n))})",
        )

    def _record_carries(self, now: int) -> None:
        """Periods this process started on the ledger for rollover budgets and pool members: a
        `carry` row (rollover), or a `repay` row (a member's debt from the last period)."""
        carried = self._ledger.carried
        while carried:
            inst, key, carry_n = carried.pop()
            cb = inst.cb
            if carry_n < 0:
                start = datetime.fromtimestamp(key / NS, tz=_zone(cb.budget.timezone)).isoformat()
                with self._lock:
                    self._event(
                        inst,
                        REPAY,
                        now,
                        estimated=dec(-carry_n),
                        spent=ZERO,
                        message=f"budget {self._label(inst)} repays ${usd(dec(-carry_n))} borrowed from pool {cb.budget.pool!r}: "
                        f"its own limit for the {cb.budget.period} starting {start} is ${usd(dec(cb.limit_n + carry_n))}",
                        eid=alerts.event_id(cb.budget.name, inst.scope_value, REPAY, key),
                    )
                continue
            if cb.carry_cap_n is None:
                continue  # a member without rollover that owed nothing: nothing to record
            with self._lock:
                self._event(
                    inst,
                    CARRY,
                    now,
                    estimated=dec(carry_n),
                    spent=ZERO,
                    message=f"budget {self._label(inst)}: ${usd(dec(carry_n))} unused carries into the {cb.budget.period} "
                    f"starting {datetime.fromtimestamp(key / NS, tz=_zone(cb.budget.timezone)).isoformat()} "
                    f"(cap ${usd(dec(cb.carry_cap_n or 0))})",
                    eid=alerts.event_id(cb.budget.name, inst.scope_value, CARRY, key),
                )

    def _drain(self) -> int:
        """Deliver queued events: the store (through the exporter), logging, callables, webhooks."""
        with self._drain_lock:
            if self._ledger.carried:  # periods a figure or a refresh started: their rows too
                self._record_carries(self._rt.now_ns())
            with self._lock:
                events, self._events = self._events, []
            if not events:
                return 0
            with suppressed():  # the store write is tokentrail's (the user's callables are not)
                self._rt.exporter.write("budget_events", alerts.encode_events(e for _, e in events))
            handlers = alerts.global_handlers()
            for cb, e in events:
                alerts.log_event(e)
                if not e.alert:
                    continue
                own = [cb.budget.on_alert] if cb.budget.on_alert is not None else []
                alerts.call_handlers(e, own + handlers)
                url = cb.budget.webhook_url or self.settings.webhook_url
                if url:
                    self._webhooks.send(url, e.payload())
            return len(events)

    def flush(self) -> None:
        """Deliver every queued event now: rows reach the spool (or the server) before this
        returns; webhooks are queued on their own thread."""
        self._check_periods()
        self._drain()
