"""BudgetManager: reserve before a model call, settle after, release on error.

Every process reserves against one shared ledger (ledger.py): the machine's file by default,
Redis across hosts. Per budget and scope value (an "instance": budget "per-user" for
"alice"), a call's worst case must fit on top of

    committed = max(ledger spend, store floor) + every process's reservations

and the check and the reservation are one atomic step, so however many processes and threads
reserve at once, a hard limit is never exceeded (the ledger is exact). The store's figure
(refreshed every `refresh_interval` seconds, default 30; env TOKENTRAIL_BUDGET_REFRESH_SECONDS)
is a floor for spend the ledger did not see: made before it existed, or by a process using
another ledger. A reservation expires (`budget_reservation_seconds`, default 600, on the
runtime's clock) so a killed process cannot hold money forever.

Thread- and asyncio-safe: `reserve`/`settle`/`release` hold the process lock for microseconds
and do one ledger step each (a file lock, or one Redis round trip).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from ..context import Attribution
from ..errors import BudgetExceeded, ConfigError
from . import snapshot
from .alerts import BudgetEvent, WebhookSender
from .allowances import overage_of
from .events import Events
from .figures import Figures
from .host import Host
from .instances import Inst, Matcher, Plan, Reservation, dec, nanos
from .ledger import Refused, open_ledger, reservation_ns, slot_key
from .ledger_file import LedgerFull
from .model import CompiledBudget, compile_budget
from .periods import CALENDAR, NS, ROLLING, Window, window
from .rates import Rates
from .refresh import Background

__all__ = ["BudgetManager", "Reservation"]

logger = logging.getLogger("tokentrail.budgets")

ZERO = Decimal(0)
_MIN, _MAX = -(2**62), 2**62  # fit the ledger's int64
_DAY_NS = 86400 * NS
_TARGETS_CACHE_MAX = 8192
_NEVER = 2**63
_ATTO_PER_NANO = 10**9
DEFAULT_REFRESH_SECONDS = 30.0
REFRESH_ENV = "TOKENTRAIL_BUDGET_REFRESH_SECONDS"


def _env_interval() -> float | None:
    raw = os.environ.get(REFRESH_ENV)
    if not raw:
        return None
    try:
        v = float(raw)
        if v > 0:
            return v
    except ValueError:
        pass
    logger.warning("tokentrail: %s=%r is not a positive number of seconds; using %s", REFRESH_ENV, raw, DEFAULT_REFRESH_SECONDS)
    return None


class BudgetManager(Events, Figures, Background):
    """Enforces `settings.budgets` for one tokentrail runtime (built as `runtime.budgets`)."""

    def __init__(
        self,
        rt: Host,
        *,
        refresh_interval: float | None = None,
        initial_wait: float = 10.0,
        lock_timeout: float = 10.0,
        start: bool = True,
        ledger: Any = None,
    ) -> None:
        self._rt = rt
        self.settings = rt.settings
        self.budgets = list(self.settings.budgets)
        self.compiled = [compile_budget(i, b) for i, b in enumerate(self.budgets)]
        by_name = {cb.budget.name: cb for cb in self.compiled}
        self._pool_of: dict[int, CompiledBudget] = {}  # a member's index -> its pool
        for cb in self.compiled:
            if cb.budget.pool is not None:
                pool = self._pool_of[cb.index] = by_name[cb.budget.pool]
                cb.lend_n = pool.lend_limit_n or 0
        self.refresh_interval = float(refresh_interval or _env_interval() or DEFAULT_REFRESH_SECONDS)
        self.initial_wait = initial_wait
        self.lock_timeout = lock_timeout
        self._ledger = ledger if ledger is not None else open_ledger(self.settings)
        for cb in self.compiled:
            carries = "rollover" if cb.carry_cap_n is not None else "pool" if cb.budget.pool is not None else None
            if carries and self._ledger.name.startswith("redis"):  # carries and repayments: the file ledger's
                raise ConfigError(
                    f"budgets[{cb.budget.name}].{carries}", "needs the machine's file ledger (not yet on Redis)",
                    f"use budget_backend='file' for this budget, or remove {carries}",
                )  # fmt: skip
        self._ttl = reservation_ns(self.settings)
        self._matcher = Matcher(self.compiled)
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._insts: dict[tuple[int, tuple[str, ...]], Inst] = {}
        self._targets: dict[Attribution, Plan] = {}
        self._rates = Rates(rt.prices, _TARGETS_CACHE_MAX)
        self._gen = 0  # bumped whenever an instance changes period (plans re-check theirs)
        self._store: dict[tuple[int, tuple[str, ...]], int] = {}
        self._store_windows: dict[int, int] = {}  # budget -> the window its store figures are for
        self._periods: dict[int, Window] = {}  # calendar budgets: the period last seen
        self._events: list[tuple[CompiledBudget, BudgetEvent]] = []
        self._webhooks = WebhookSender()
        self._ready = False
        self._ready_event = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._refresh_failed = False
        self._no_store = False
        self._thread: threading.Thread | None = None
        self.refreshes = 0
        self.last_refresh_ns: int | None = None
        now = rt.now_ns()
        for cb in self.compiled:
            if cb.budget.period in CALENDAR:
                self._periods[cb.index] = window(cb.budget.period, cb.budget.timezone, now)
        self._snapshot_path = snapshot.path_for(self.settings.home)
        self._fingerprints = [snapshot.fingerprint(cb) for cb in self.compiled]
        if start:
            self._ready = self._cold_start(now)
            if self._ready:
                self._ready_event.set()
            self._start_thread()
            # a forked worker (gunicorn, celery prefork) inherits no threads and maybe a held lock
            os.register_at_fork(after_in_child=_fork_hook(weakref.ref(self)))
        else:
            self._ready = True

    @property
    def ledger(self) -> Any:
        """The shared ledger this manager reserves against (ledger.py)."""
        return self._ledger

    # -- the call path ---------------------------------------------------------------------------

    def _inst(self, cb: CompiledBudget, key: tuple[str, ...]) -> Inst:
        inst = self._insts.get((cb.index, key))
        if inst is None:
            lkey = slot_key(self._fingerprints[cb.index], key)
            inst = self._insts[(cb.index, key)] = Inst(cb, key, lkey, ROLLING.get(cb.budget.period, 0))
        return inst

    def _match(self, a: Attribution) -> Plan:
        """The plan of a call with attribution `a`: the instances it counts against (cached)."""
        matched = self._matcher.match(a)
        if self._pool_of:  # a member's call also counts against its pool, whatever the pool's scope
            have = {cb.index for cb, _ in matched}
            for cb, _ in list(matched):
                pool = self._pool_of.get(cb.index)
                if pool is not None and pool.index not in have:
                    have.add(pool.index)
                    matched.append((pool, ()))
            matched.sort(key=lambda t: t[0].index)
        with self._lock:
            plan = Plan(tuple(self._inst(cb, key) for cb, key in matched))
            if len(self._targets) >= _TARGETS_CACHE_MAX:
                self._targets = {}
            self._targets[a] = plan
        return plan

    def _roll(self, inst: Inst, now: int) -> int | None:
        """Bring an instance into the period containing `now`; returns the store's floor for
        it when one is known (the caller gives it to the ledger, outside the lock)."""
        cb = inst.cb
        period = cb.budget.period
        if inst.hi:  # it had a period (a new instance is in no checked plan yet)
            self._gen += 1  # every plan re-checks its instances' periods
        if period in CALENDAR:
            w = self._periods.get(cb.index)
            if w is None or not w.start_ns <= now < (w.end_ns or _MAX):
                w = window(period, cb.budget.timezone, now)
                self._note_period(cb, w, now)
            inst.lo, inst.hi, inst.window_key = w.start_ns, w.end_ns or _MAX, w.key
            inst.forecast_from = inst.lo + min((inst.hi - inst.lo) // 10, _DAY_NS)
        else:
            inst.lo, inst.hi, inst.window_key = _MIN, _MAX, 0
            inst.forecast_from = _NEVER
        inst.off = -1
        inst.spent_n = 0
        inst.unpriced_models = set()
        inst.block_alerted_at = None
        inst.forecast_alerted = False
        if self._store_windows.get(cb.index) == inst.window_key:
            return self._store.get((cb.index, inst.key), 0)
        return None

    def reserve(
        self,
        attribution: Attribution,
        *,
        model: str | None,
        provider: str | None,
        prompt_tokens: int,
        max_output_tokens: int | None = None,
    ) -> Reservation | None:
        """Set aside the call's worst case in every budget it falls under, or raise
        BudgetExceeded (before the provider is called) when it does not fit a blocking one.
        Worst case: prompt tokens + max_output_tokens (else the budget's cap, else 4096) at the
        model's price. Returns None when no budget applies."""
        if not self._ready:
            self._wait_ready()
        plan = self._targets.get(attribution)
        if plan is None:
            plan = self._match(attribution)
        insts = plan.insts
        if not insts:
            return None
        now = self._rt.now_ns()
        prompt_tokens = max(int(prompt_tokens or 0), 0)
        rates = self._rates.get(model, provider, now, prompt_tokens)
        if rates is None or not (plan.lo <= now < plan.hi and plan.gen == self._gen):
            rates_ok = self._prepare(plan, rates, model, now)
            if not rates_ok:
                return Reservation(insts, [0] * len(insts), plan.los, plan.gen, None, None, now, model)
        assert rates is not None
        fixed, per_in, per_out = rates
        base = fixed + per_in * prompt_tokens
        if max_output_tokens and max_output_tokens > 0:
            worst = -(-(base + per_out * max_output_tokens) // _ATTO_PER_NANO)
            amounts = [worst] * len(insts)
        elif plan.uniform:
            worst = -(-(base + per_out * plan.caps[0]) // _ATTO_PER_NANO)
            amounts = [worst] * len(insts)
        else:
            amounts = [-(-(base + per_out * cap) // _ATTO_PER_NANO) for cap in plan.caps]
            worst = max(amounts)
        los, gen = plan.los, plan.gen
        try:
            handle = self._ledger.reserve(insts, amounts, now, now + self._ttl)
        except LedgerFull as e:
            # never break the user's program: the call goes through uncounted, said loudly
            logger.error("tokentrail: %s; this call is not counted against its budgets", e)
            return Reservation(insts, [0] * len(insts), los, gen, None, None, now, model)
        except Refused as r:
            if self._ledger.carried:
                self._record_carries(now)
            inst = insts[r.index]
            if inst.cb.allowance_n is not None and inst.cb.budget.overage != "warn":
                raise self._past_allowance(inst, amounts[r.index], r, model, now) from None
            with self._lock:
                self._queue_block(inst, amounts[r.index], r.committed, model, now)
            raise BudgetExceeded(
                inst.cb.budget.name,
                scope_value=inst.scope_value or None,
                spent_usd=dec(r.committed),
                limit_usd=inst.cb.limit,
                estimated_cost_usd=dec(amounts[r.index]),
                model=model,
            ) from None
        if self._ledger.carried:
            self._record_carries(now)
        return Reservation(insts, amounts, los, gen, handle, worst, now, model)

    def _prepare(self, plan: Plan, rates: tuple[int, int, int] | None, model: str | None, now: int) -> bool:
        """The slow side of reserve: bring the plan's instances into the period of `now`, and
        handle a model without a price (raise for unpriced='block', else an event). True when
        the call is priced."""
        floors: list[tuple[Inst, int]] = []
        with self._lock:
            for inst in plan.insts:
                if not inst.lo <= now < inst.hi:
                    floor = self._roll(inst, now)
                    if floor:
                        floors.append((inst, floor))
                if rates is None:
                    cb = inst.cb
                    if cb.unpriced_block:
                        self._queue_unpriced(inst, model, now, blocked=True)
                        raise BudgetExceeded(
                            cb.budget.name,
                            scope_value=inst.scope_value or None,
                            spent_usd=inst.spent,
                            limit_usd=cb.limit,
                            reason="unpriced",
                            model=model,
                        )
                    if (model or "") not in inst.unpriced_models:
                        self._queue_unpriced(inst, model, now, blocked=False)
            plan.validate(self._gen)
        for inst, floor in floors:
            self._ledger.set_floor(inst, floor, now)
        if self._ledger.carried:
            self._record_carries(now)
        return rates is not None

    def settle(self, reservation: Reservation, cost: Any) -> None:
        """The call finished: its reservation becomes its real cost (a `pricing.Cost`, or a
        Decimal; an unpriced cost adds nothing)."""
        total = cost if isinstance(cost, Decimal) else getattr(cost, "total_usd", None)
        amount = nanos(total) if total else 0
        with self._lock:
            if reservation.done:
                return
            reservation.done = True
        if reservation.handle is None:
            return  # unpriced: nothing reserved, nothing known to count
        insts, at = reservation.insts, reservation.at_ns
        if reservation.gen == self._gen:
            costs = [amount] * len(insts)
        else:  # a period that ended meanwhile keeps the spend: the new one starts without it
            costs = [amount if inst.lo == lo else 0 for inst, lo in zip(insts, reservation.los, strict=True)]
        results = self._ledger.settle(reservation.handle, insts, reservation.amounts, costs, at)
        if self._ledger.carried:
            self._record_carries(at)
        forecasts: list[Inst] = []
        for inst, cost_n, (spent, before, after, carry) in zip(insts, costs, results, strict=True):
            inst.spent_n = spent
            if inst.allowance_n is not None and cost_n:
                over = overage_of(inst.allowance_n + carry, spent, cost_n)
                if over:
                    with self._lock:
                        self._queue_overage(inst, over, spent, cost_n, carry, reservation.model, at)
            elif inst.loan_base_n is not None and cost_n:
                loan = overage_of(inst.loan_base_n + carry, spent, cost_n)
                if loan:
                    with self._lock:
                        self._queue_loan(inst, self._pool_of[inst.cb.index], loan, spent, carry, reservation.model, at)
            if after > before:
                with self._lock:
                    self._fire_thresholds(inst, before, after, at)
            # a forecast: a calendar budget whose spend at the period's rate so far reaches the
            # limit before the period ends; not before forecast_from (a tenth of the period, at
            # most a day: a first call's rate is no trend; never for the other periods)
            if inst.forecast_from <= at and not inst.forecast_alerted:
                limit = inst.limit_n
                if 0 < spent < limit and spent * (inst.hi - inst.lo) >= limit * (at - inst.lo):
                    forecasts.append(inst)
        for inst in forecasts:
            self._claim_forecast(inst, at)

    def release(self, reservation: Reservation) -> None:
        """The call failed before any usage was known: give its reservation back."""
        with self._lock:
            if reservation.done:
                return
            reservation.done = True
        if reservation.handle is not None:
            self._ledger.release(reservation.handle, reservation.insts, reservation.amounts)

    @contextmanager
    def reserved(self, attribution: Attribution, **kw: Any) -> Iterator[Reservation | None]:
        """`with manager.reserved(attr, model=..., ...) as r:` releases the reservation when the
        block raises; settle it inside the block."""
        r = self.reserve(attribution, **kw)
        try:
            yield r
        except BaseException:  # release, then re-raise the caller's own error
            if r is not None:
                self.release(r)
            raise

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until the first spend figures are read from the store (or the ledger alone is
        enforced); True when ready. Calls never wait for this: tests and scripts may."""
        return self._ready_event.wait(timeout)

    def deliver(self) -> int:
        """Deliver queued events now: the public form of what the thread does, for a manager
        built with start=False (Tokentrail.budgets_without_thread(), the demo)."""
        return self._drain()

    def shutdown(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.lock_timeout + 5)
        self._save_snapshot()
        self._drain()
        self._webhooks.close(timeout=1.0)
        self._ledger.close()

    @property
    def webhooks(self) -> WebhookSender:
        return self._webhooks


def _fork_hook(ref: weakref.ReferenceType[BudgetManager]) -> Callable[[], None]:
    def hook() -> None:
        manager = ref()
        if manager is not None:
            manager._after_fork()

    return hook
