"""BudgetManager: reserve before a model call, settle after, release on error.

Accounting, per budget and scope value (an "instance": budget "per-user" for "alice"):

    spent     = store + local      (what the period has cost so far)
    committed = spent + reserved   (what a new call's worst case must fit on top of)

- store: what `tokentrail.spans` held for the period at the last refresh (every process's
  flushed spend). A daemon thread refreshes it: first when the manager starts, then every
  `refresh_interval` seconds (default 30; env TOKENTRAIL_BUDGET_REFRESH_SECONDS).
- local: this process's settled spend that the store did not hold at the last refresh.
- reserved: worst cases of this process's calls in flight.

Double counting rule: local spend is dropped once the store's figure holds its span, known by
*epochs*. A settled cost is stamped with the current refresh epoch when its span has been
handed to the exporter: the manager's span processor runs after the BatchSpanProcessor queued
the span, and stamps what its thread settled (integrations settle and then end the call's
span, in one callback). A refresh starts a new epoch, force-flushes this process's spans into
the store, queries, and drops the local spend stamped with earlier epochs: those spans were
queued before the flush, so they are in the figure it just read. Spend stamped later stays
local and may be in that figure too: counted twice until the next refresh, the safe direction.
Spend still unstamped at a refresh (a settle with no span end after it in its thread) is
stamped with the new epoch, so it is dropped one refresh later. A failed refresh (store down,
lock busy) drops nothing.

Several processes see each other's spend only through the store, so together they can
overshoot a limit by what the *other* processes spend in one refresh interval plus their span
exporter's delay (about 1 s) and the time a refresh takes. Within one process a limit is never
overshot: the check and the reservation happen under one lock.

Money on the call path is integer nano-dollars (the store's Decimal(18, 9) exactly): exact,
and immune to the application's decimal context. Figures leave the manager as Decimal.

Thread- and asyncio-safe: `reserve`/`settle`/`release` do no I/O and hold the lock for
microseconds. A new process must not forget what was spent before it started, yet its first
call must not wait for the store (about half a second for the embedded one): until its first
refresh, it counts the last process's figures (snapshot.py, read once when the manager
starts) as the store's, or nothing when the embedded store and the spool are empty (a fresh
home), and that first refresh comes after one refresh interval, as every later one does (the
bound across processes is unchanged; a CLI run shorter than the interval never opens the
store). Only a process with neither (a new host of a ClickHouse server) reads the store at
once, and its first `reserve` waits for that (at most `initial_wait`, 10 s).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Context, Decimal
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

from ..context import Attribution
from ..errors import BudgetExceeded
from ..errors import format_usd as _usd
from ..usage import Usage
from . import alerts, snapshot
from .alerts import BLOCK, RESET, UNPRICED, WARN, BudgetEvent, WebhookSender
from .model import CompiledBudget, compile_budget
from .model import scope_value as scope_value_of
from .periods import CALENDAR, NS, ROLLING, Window, window
from .spend import fetch_fired, fetch_spend

__all__ = ["BudgetManager", "Reservation"]

logger = logging.getLogger("tokentrail.budgets")

ZERO = Decimal(0)
_C = Context(prec=28, rounding=ROUND_HALF_EVEN)  # money math immune to the app's decimal context
_MIN, _MAX = -(2**63), 2**63
_DAY_NS = 86400 * NS
_OUT_PROBE = 65536  # output tokens used to measure a model's output price per token
_MIN_BUCKET = 1024
_TARGETS_CACHE_MAX = 8192
_BLOCK_REALERT_NS = 3600 * NS  # rolling/total budgets have no period: re-alert a block hourly
# chdb cannot be used in a process forked after it was opened (it hangs): remember we opened it
_embedded_opened = False
DEFAULT_REFRESH_SECONDS = 30.0
REFRESH_ENV = "TOKENTRAIL_BUDGET_REFRESH_SECONDS"
_NANO = Decimal("1e9")
_NONE = 2**62  # "no threshold left": more nano-dollars than any budget holds


def _nanos(d: Decimal, *, ceiling: bool = False) -> int:
    """Nano-dollars; costs are already whole nano-dollars, worst cases round up."""
    n = _C.multiply(d, _NANO)
    return int(n.to_integral_value(rounding=ROUND_CEILING if ceiling else ROUND_HALF_EVEN, context=_C))


def _dec(n: int) -> Decimal:
    return Decimal(n).scaleb(-9, context=_C)


class _Inst:
    """One budget for one scope value, in its current period. Fields change under the lock;
    money in nano-dollars."""

    __slots__ = (
        "cb",
        "key",
        "scope_value",
        "lo",
        "hi",
        "window_key",
        "store",
        "unstamped",
        "older",
        "cur_epoch",
        "cur_local",
        "local_sum",
        "headroom",
        "next_i",
        "warn_local",
        "unpriced_models",
        "block_alerted_at",
    )

    def __init__(self, cb: CompiledBudget, key: tuple[str, ...]) -> None:
        self.cb = cb
        self.key = key
        self.scope_value = scope_value_of(key)
        self.lo = self.hi = 0  # the period is [lo, hi) in ns; lo=hi=0 until first rolled
        self.window_key = -1
        self.store = 0
        # local spend not yet stamped with an epoch (its span has not ended yet), and by epoch:
        # the current epoch's apart from the older ones
        self.unstamped = 0
        self.older: dict[int, int] = {}
        self.cur_epoch = 0
        self.cur_local = 0
        self.local_sum = 0
        self.headroom = cb.limit_n  # limit - store - local - reserved
        self.next_i = 0  # the next threshold to fire, index into cb.thresholds
        self.warn_local = _NONE  # local spend at which the next threshold fires
        self.unpriced_models: set[str] = set()
        self.block_alerted_at: int | None = None

    @property
    def spent(self) -> Decimal:
        return _dec(self.store + self.local_sum)

    @property
    def reserved(self) -> int:
        return self.cb.limit_n - self.store - self.local_sum - self.headroom

    def stamp(self, epoch: int, amount: int) -> None:
        """`amount` of unstamped spend had its span queued for export during `epoch`."""
        if self.cur_epoch != epoch:
            if self.cur_local:
                self.older[self.cur_epoch] = self.older.get(self.cur_epoch, 0) + self.cur_local
            self.cur_epoch, self.cur_local = epoch, 0
        self.cur_local += amount
        self.unstamped -= amount

    def drop_local(self, through_epoch: int) -> None:
        """Forget local spend of epochs <= through_epoch (the store holds it now)."""
        if self.cur_epoch <= through_epoch:
            self.cur_local = 0
        if self.older:
            self.older = {e: v for e, v in self.older.items() if e > through_epoch}
        self.local_sum = self.unstamped + self.cur_local + sum(self.older.values())

    def arm(self) -> None:
        th = self.cb.thresholds_n
        self.warn_local = th[self.next_i] - self.store if self.next_i < len(th) else _NONE


class Reservation:
    """What `reserve` set aside for one call; pass it to `settle` or `release` once (a second
    call is ignored)."""

    __slots__ = ("items", "worst_usd", "at_ns", "model", "done")

    def __init__(self, items: list[tuple[_Inst, int, int]], worst_usd: Decimal | None, at_ns: int, model: str | None) -> None:
        self.items = items  # (instance, nano-dollars reserved, its period's start)
        self.worst_usd = worst_usd  # None: an unpriced model
        self.at_ns = at_ns
        self.model = model
        self.done = False

    @property
    def budgets(self) -> list[tuple[str, str]]:
        """(budget name, scope value) of every budget this call counts against."""
        return [(i.cb.budget.name, i.scope_value) for i, _, _ in self.items]


class _StampOnEnd(SpanProcessor):
    """Added after the BatchSpanProcessor: when it runs, the ended span is in the export queue."""

    def __init__(self, manager: BudgetManager) -> None:
        self._manager = weakref.ref(manager)

    def on_end(self, span: ReadableSpan) -> None:
        manager = self._manager()
        if manager is not None and manager._unstamped:
            manager._span_ended()


class _Matcher:
    """Which budgets a call falls under, without testing every budget: budgets with a fixed
    value on a field (team="search") are indexed by that value; the rest are tested one by one."""

    def __init__(self, compiled: list[CompiledBudget]) -> None:
        self.scan: list[CompiledBudget] = []
        self.index: dict[str, dict[str, list[CompiledBudget]]] = {}
        for cb in compiled:
            field = next((f for f, _ in cb.fixed if f != "tags"), None)
            if field is None:
                self.scan.append(cb)
            else:
                value = dict(cb.fixed)[field]
                self.index.setdefault(field, {}).setdefault(value, []).append(cb)

    def match(self, a: Attribution) -> list[tuple[CompiledBudget, tuple[str, ...]]]:
        out = [(cb, k) for cb in self.scan for k in cb.keys(a)]
        for field, by_value in self.index.items():
            for cb in by_value.get(getattr(a, field), ()):
                out.extend((cb, k) for k in cb.keys(a))
        out.sort(key=lambda t: t[0].index)  # configuration order: the first refusing budget is reported
        return out


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


class BudgetManager:
    """Enforces `settings.budgets` for one tokentrail runtime (built as `runtime.budgets`)."""

    def __init__(
        self,
        rt: Any,
        *,
        refresh_interval: float | None = None,
        initial_wait: float = 10.0,
        lock_timeout: float = 10.0,
        start: bool = True,
    ) -> None:
        self._rt = rt
        self.settings = rt.settings
        self.budgets = list(self.settings.budgets)
        self.compiled = [compile_budget(i, b) for i, b in enumerate(self.budgets)]
        self.refresh_interval = float(
            refresh_interval
            or getattr(self.settings, "budget_refresh_seconds", None)
            or _env_interval()
            or DEFAULT_REFRESH_SECONDS
        )
        self.initial_wait = initial_wait
        self.lock_timeout = lock_timeout
        self._matcher = _Matcher(self.compiled)
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._insts: dict[tuple[int, tuple[str, ...]], _Inst] = {}
        self._targets: dict[Attribution, tuple[_Inst, ...]] = {}
        self._rates: dict[tuple[str | None, str | None, int, int], tuple[Decimal, Decimal, Decimal] | None] = {}
        self._store: dict[tuple[int, tuple[str, ...]], int] = {}
        self._store_windows: dict[int, int] = {}  # budget -> the window its store figures are for
        self._fired_store: set[tuple[str, str, float, int]] = set()
        self._periods: dict[int, Window] = {}  # calendar budgets: the period last seen
        self._epoch = 0
        # thread id -> [(instance, its period start, nano-dollars)] settled, span not ended yet
        self._unstamped: dict[int, list[tuple[_Inst, int, int]]] = {}
        self._events: list[tuple[CompiledBudget, BudgetEvent]] = []
        self._webhooks = WebhookSender()
        self._ready = False
        self._ready_event = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._refresh_failed = False
        self._no_store = False
        self.refreshes = 0
        self.last_refresh_ns: int | None = None
        now = rt.now_ns()
        for cb in self.compiled:
            if cb.budget.period in CALENDAR:
                self._periods[cb.index] = window(cb.budget.period, cb.budget.timezone, now)
        rt.provider.add_span_processor(_StampOnEnd(self))
        self._snapshot_path = snapshot.path_for(self.settings.home)
        self._fingerprints = [snapshot.fingerprint(cb) for cb in self.compiled]
        self._thread: threading.Thread | None = None
        if start:
            self._ready = self._cold_start(now)
            if self._ready:
                self._ready_event.set()
            self._start_thread()
            # a forked worker (gunicorn, celery prefork) inherits no threads and maybe a held lock
            os.register_at_fork(after_in_child=_fork_hook(weakref.ref(self)))
        else:
            self._ready = True

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tokentrail-budgets", daemon=True)
        self._thread.start()

    def _after_fork(self) -> None:
        closed = self._stop.is_set()
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._events = []  # the parent delivers its own
        self._webhooks = WebhookSender(timeout=self._webhooks.timeout)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._ready_event = threading.Event()
        self._ready = closed
        if closed:
            return
        if self.settings.embedded and _embedded_opened:
            # chdb hangs in a child forked after it was opened: enforce with what is known
            self._no_store = True
            self._ready = True
            logger.warning(
                "tokentrail: budgets in a process forked after the embedded store was opened cannot read "
                "the store; configure tokentrail after the fork (e.g. gunicorn post_fork) or use a ClickHouse server"
            )
        self._start_thread()

    # -- a new process ---------------------------------------------------------------------------

    def _cold_start(self, now: int) -> bool:
        """Figures to enforce with until the first refresh (see the module docstring): True
        when every budget has one, so the first reserve need not wait."""
        windows = {cb.index: window(cb.budget.period, cb.budget.timezone, now).key for cb in self.compiled}
        cold = snapshot.take(self.settings)
        if cold.empty:
            self._store, self._store_windows = {}, windows
            return True
        snap = cold.snapshot
        if snap is None:
            return False
        store: dict[tuple[int, tuple[str, ...]], int] = {}
        for cb in self.compiled:
            found = snap.budgets.get(self._fingerprints[cb.index])
            if found is None:
                return False  # a budget the last process did not have: ask the store
            period, spent = found
            if period == windows[cb.index]:
                store.update(((cb.index, key), n) for key, n in spent.items())
            # another period: it started since, with nothing known spent in it
        self._store, self._store_windows, self._fired_store = store, windows, set(snap.fired)
        return True

    def _save_snapshot(self) -> None:
        """Write what this process knows now (store figures plus local spend) for the next one."""
        with self._lock:
            if not self._store_windows:
                return  # nothing known yet (no refresh, no cold-start figures)
            budgets: dict[str, tuple[int, dict[tuple[str, ...], int]]] = {}
            for cb in self.compiled:
                w = self._store_windows.get(cb.index)
                if w is None:
                    continue
                spent = {key: n for (idx, key), n in self._store.items() if idx == cb.index}
                budgets[self._fingerprints[cb.index]] = (w, spent)
            fired = set(self._fired_store)
            for (idx, key), inst in self._insts.items():
                entry = budgets.get(self._fingerprints[idx])
                if entry is None or inst.window_key != entry[0]:
                    continue
                entry[1][key] = inst.store + inst.local_sum
                start_us = inst.window_key // 1000
                fired.update((inst.cb.budget.name, inst.scope_value, t, start_us) for t, _ in inst.cb.thresholds[: inst.next_i])
        snapshot.write(self._snapshot_path, budgets, fired)

    # -- the call path ---------------------------------------------------------------------------

    def _match(self, a: Attribution) -> tuple[_Inst, ...]:
        """The instances a call with attribution `a` counts against (cached per attribution)."""
        matched = self._matcher.match(a)
        with self._lock:
            insts = []
            for cb, key in matched:
                inst = self._insts.get((cb.index, key))
                if inst is None:
                    inst = self._insts[(cb.index, key)] = _Inst(cb, key)
                insts.append(inst)
            out = tuple(insts)
            if len(self._targets) >= _TARGETS_CACHE_MAX:
                self._targets = {}
            self._targets[a] = out
        return out

    def _price(self, model: str | None, provider: str | None, now: int, prompt_tokens: int) -> tuple[Decimal, Decimal, Decimal] | None:
        """(per call, per input token, per output token) of a model on the call's UTC day, or
        None when it has no price. Measured at the power of two above the prompt size, so a
        tiered price (a cliff on input size) comes out at the tier the call can reach."""
        bucket = _MIN_BUCKET if prompt_tokens <= _MIN_BUCKET else 1 << (prompt_tokens - 1).bit_length()
        k = (model, provider, now // _DAY_NS, bucket)
        try:
            return self._rates[k]
        except KeyError:
            pass
        rates: tuple[Decimal, Decimal, Decimal] | None = None
        if model:
            when = datetime.fromtimestamp(now / NS, tz=timezone.utc)
            prices = self._rt.prices
            base = prices.cost(Usage(), model, provider, when).total_usd
            inp = prices.cost(Usage(input_tokens=bucket), model, provider, when).total_usd
            both = prices.cost(Usage(input_tokens=bucket, output_tokens=_OUT_PROBE), model, provider, when).total_usd
            if base is not None and inp is not None and both is not None:
                rates = (base, _C.divide(_C.subtract(inp, base), bucket), _C.divide(_C.subtract(both, inp), _OUT_PROBE))
        if len(self._rates) >= _TARGETS_CACHE_MAX:
            self._rates = {}
        self._rates[k] = rates  # a race prices it twice, harmlessly
        return rates

    def _roll(self, inst: _Inst, now: int) -> None:
        """Bring an instance into the period containing `now` (a new period starts empty)."""
        cb = inst.cb
        period = cb.budget.period
        if period in CALENDAR:
            w = self._periods.get(cb.index)
            if w is None or not w.start_ns <= now < (w.end_ns or _MAX):
                w = window(period, cb.budget.timezone, now)
                self._note_period(cb, w, now)
            inst.lo, inst.hi, inst.window_key = w.start_ns, w.end_ns or _MAX, w.key
        else:
            inst.lo, inst.hi, inst.window_key = _MIN, _MAX, 0
        inst.older = {}
        inst.unstamped = inst.cur_local = inst.local_sum = 0
        inst.unpriced_models = set()
        inst.block_alerted_at = None
        fresh = self._store_windows.get(cb.index) == inst.window_key
        inst.store = self._store.get((cb.index, inst.key), 0) if fresh else 0
        inst.headroom = cb.limit_n - inst.store  # reservations of the old period stay there
        inst.next_i = self._seeded_next(inst)
        inst.arm()

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
        insts = self._targets.get(attribution)
        if insts is None:
            insts = self._match(attribution)
        if not insts:
            return None
        now = self._rt.now_ns()
        prompt_tokens = max(int(prompt_tokens or 0), 0)
        rates = self._price(model, provider, now, prompt_tokens)
        given_cap = max_output_tokens if max_output_tokens and max_output_tokens > 0 else None
        worst_by_cap: dict[int, int] = {}
        worst = 0
        with self._lock:
            for inst in insts:
                if not inst.lo <= now < inst.hi:
                    self._roll(inst, now)
                cb = inst.cb
                if rates is None:
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
                    continue
                cap = given_cap or cb.max_output_tokens
                worst = worst_by_cap.get(cap, -1)
                if worst < 0:
                    fixed, per_in, per_out = rates
                    exact = _C.add(_C.add(fixed, _C.multiply(per_in, prompt_tokens)), _C.multiply(per_out, cap))
                    worst = worst_by_cap[cap] = _nanos(exact, ceiling=True)
                if cb.block and worst > inst.headroom:
                    committed = cb.limit_n - inst.headroom
                    self._queue_block(inst, worst, committed, model, now)
                    raise BudgetExceeded(
                        cb.budget.name,
                        scope_value=inst.scope_value or None,
                        spent_usd=_dec(committed),
                        limit_usd=cb.limit,
                        estimated_cost_usd=_dec(worst),
                        model=model,
                    )
            items: list[tuple[_Inst, int, int]] = []
            for inst in insts:
                amount = 0 if rates is None else worst_by_cap[given_cap or inst.cb.max_output_tokens]
                inst.headroom -= amount
                items.append((inst, amount, inst.lo))
        return Reservation(items, _dec(max(worst_by_cap.values())) if worst_by_cap else None, now, model)

    def settle(self, reservation: Reservation, cost: Any) -> None:
        """The call finished: its reservation becomes its real cost (a `pricing.Cost`, or a
        Decimal; an unpriced cost adds nothing)."""
        total = cost if isinstance(cost, Decimal) else getattr(cost, "total_usd", None)
        amount = _nanos(total) if total else 0
        with self._lock:
            if reservation.done:
                return
            reservation.done = True
            pending = None
            for inst, reserved, lo in reservation.items:
                if inst.lo != lo:  # its period ended meanwhile: the spend belongs to the old one
                    continue
                inst.headroom += reserved - amount
                if amount:
                    inst.unstamped += amount
                    inst.local_sum += amount
                    if pending is None:
                        pending = self._unstamped.setdefault(threading.get_ident(), [])
                    pending.append((inst, lo, amount))
                    if inst.local_sum >= inst.warn_local:
                        self._fire_thresholds(inst, reservation.at_ns)

    def _stamp(self, entries: list[tuple[_Inst, int, int]], epoch: int) -> None:
        for inst, lo, amount in entries:
            if inst.lo == lo:  # a period that ended took its local spend with it
                inst.stamp(epoch, amount)

    def _span_ended(self) -> None:
        """Called by the span processor after the exporter's queue took a span: what this
        thread settled before is now on its way to the store."""
        tid = threading.get_ident()
        if tid in self._unstamped:
            with self._lock:
                entries = self._unstamped.pop(tid, None)
                if entries:
                    self._stamp(entries, self._epoch)

    def release(self, reservation: Reservation) -> None:
        """The call failed before any usage was known: give its reservation back."""
        with self._lock:
            if reservation.done:
                return
            reservation.done = True
            for inst, reserved, lo in reservation.items:
                if inst.lo == lo:
                    inst.headroom += reserved

    @contextmanager
    def reserved(self, attribution: Attribution, **kw: Any) -> Iterator[Reservation | None]:
        """`with manager.reserved(attr, model=..., ...) as r:` releases the reservation when the
        block raises; settle it inside the block."""
        r = self.reserve(attribution, **kw)
        try:
            yield r
        except BaseException:
            if r is not None:
                self.release(r)
            raise

    # -- figures -----------------------------------------------------------------------------------

    def spent(self, budget: str, scope_value: str = "") -> Decimal:
        """This process's view of a budget's spend in its current period: the store's figure at
        the last refresh plus local spend not in it yet (reservations excluded)."""
        now = self._rt.now_ns()
        cb = self._compiled_named(budget)
        with self._lock:
            for (idx, _), inst in self._insts.items():
                if idx == cb.index and inst.scope_value == scope_value:
                    if not inst.lo <= now < inst.hi:
                        self._roll(inst, now)
                    return inst.spent
            if self._store_windows.get(cb.index) != self._window_key(cb, now):
                return ZERO
            for (idx, key), amount in self._store.items():
                if idx == cb.index and scope_value_of(key) == scope_value:
                    return _dec(amount)
            return ZERO

    def reserved_usd(self, budget: str, scope_value: str = "") -> Decimal:
        """Worst cases of this process's calls in flight for a budget."""
        cb = self._compiled_named(budget)
        with self._lock:
            total = sum(i.reserved for (idx, _), i in self._insts.items() if idx == cb.index and i.scope_value == scope_value)
        return _dec(total) if total else ZERO

    def _compiled_named(self, budget: str) -> CompiledBudget:
        for cb in self.compiled:
            if cb.budget.name == budget:
                return cb
        raise KeyError(budget)

    def _window_key(self, cb: CompiledBudget, now: int) -> int:
        return window(cb.budget.period, cb.budget.timezone, now).key if cb.budget.period in CALENDAR else 0

    # -- thresholds and events (queued under the lock, delivered by the background thread) -------

    def _period_start_ns(self, inst: _Inst, now: int) -> int:
        p = inst.cb.budget.period
        if p in ROLLING:
            return now - ROLLING[p]
        return inst.window_key if p in CALENDAR else 0

    def _event(
        self,
        inst: _Inst,
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

    @staticmethod
    def _label(inst: _Inst) -> str:
        return f"{inst.cb.budget.name!r}" + (f" [{inst.scope_value}]" if inst.scope_value else "")

    def _fire_thresholds(self, inst: _Inst, now: int) -> None:
        cb = inst.cb
        spent_n = inst.store + inst.local_sum
        spent = _dec(spent_n)
        while inst.next_i < len(cb.thresholds) and spent_n >= cb.thresholds_n[inst.next_i]:
            t = cb.thresholds[inst.next_i][0]
            inst.next_i += 1
            self._event(
                inst,
                WARN,
                now,
                threshold=t,
                spent=spent,
                message=f"budget {self._label(inst)} reached {t:.0%} of ${_usd(cb.limit)} "
                f"(${_usd(spent)} spent this {cb.budget.period})",
                eid=alerts.event_id(cb.budget.name, inst.scope_value, WARN, t, self._period_start_ns(inst, now)),
            )
        inst.arm()

    def _seeded_next(self, inst: _Inst) -> int:
        """How many thresholds another process (or an earlier run) already alerted this period."""
        cb = inst.cb
        if cb.budget.period in ROLLING or not self._fired_store:
            return 0
        start_us = inst.window_key // 1000
        n = 0
        for i, (t, _) in enumerate(cb.thresholds):
            if (cb.budget.name, inst.scope_value, t, start_us) in self._fired_store:
                n = i + 1
        return n

    def _queue_block(self, inst: _Inst, amount_n: int, committed_n: int, model: str | None, now: int) -> None:
        # every refusal is a row; alerts: once per period (hourly for rolling/total budgets)
        cb = inst.cb
        last = inst.block_alerted_at
        alert = last is None or (cb.budget.period not in CALENDAR and now - last >= _BLOCK_REALERT_NS)
        if alert:
            inst.block_alerted_at = now
        amount, committed = _dec(amount_n), _dec(committed_n)
        self._event(
            inst,
            BLOCK,
            now,
            estimated=amount,
            spent=committed,
            model=model,
            message=f"budget {self._label(inst)} blocked a call to {model or 'an unknown model'} "
            f"(up to ${_usd(amount)}): ${_usd(committed)} of ${_usd(cb.limit)} committed this {cb.budget.period}",
            alert=alert,
        )

    def _queue_unpriced(self, inst: _Inst, model: str | None, now: int, *, blocked: bool) -> None:
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

    def _note_period(self, cb: CompiledBudget, w: Window, now: int) -> None:
        """A calendar budget entered a new period: one `reset` event per budget (not per value)."""
        prev = self._periods.get(cb.index)
        if prev is not None and w.start_ns < prev.start_ns:
            return  # the clock went back into an earlier period (a replay): nothing new started
        self._periods[cb.index] = w
        if prev is None or prev.key == w.key:
            return
        probe = _Inst(cb, ())
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

    # -- background: refresh and delivery ----------------------------------------------------------

    def _wait_ready(self) -> None:
        if not self._ready_event.wait(self.initial_wait):
            logger.warning(
                "tokentrail: budget spend not loaded from the store after %.0fs; enforcing with this process's spend only",
                self.initial_wait,
            )
        self._ready = True

    @contextmanager
    def _client(self) -> Iterator[Any]:
        global _embedded_opened
        from ..store import open_store

        if self._no_store:
            raise RuntimeError("this process was forked after the embedded store was opened (chdb does not survive fork)")
        if self.settings.embedded:
            _embedded_opened = True
        with open_store(self.settings, lock_timeout=self.lock_timeout) as store:
            yield store  # a Store: its spend is read from the rollups where they hold it

    def refresh(self) -> bool:
        """Read every budget's spend from the store now; True when it worked."""
        with self._refresh_lock:
            with self._lock:
                epoch = self._epoch
                self._epoch += 1
                for entries in self._unstamped.values():  # see "Double counting rule"
                    self._stamp(entries, self._epoch)
                self._unstamped.clear()
            try:
                self._rt.provider.force_flush(int(self.lock_timeout * 1000))
                now = self._rt.now_ns()
                items = [(cb, window(cb.budget.period, cb.budget.timezone, now)) for cb in self.compiled]
                starts = [w.start_ns for cb, w in items if cb.budget.period not in ROLLING]
                with self._client() as client:
                    spend = fetch_spend(client, items)
                    fired = fetch_fired(client, min(starts)) if starts else set()
            except Exception as e:
                log = logger.debug if self._refresh_failed else logger.warning
                log("tokentrail: budget refresh failed (%s); counting this process's spend only until it works", e)
                self._refresh_failed = True
                return False
            self._refresh_failed = False
            with self._lock:
                self._store = {k: _nanos(s.spent_usd) for k, s in spend.items()}
                self._store_windows = {cb.index: w.key for cb, w in items}
                self._fired_store = fired
                for (idx, key), inst in self._insts.items():
                    if inst.window_key != items[idx][1].key:
                        continue  # its period ended (or never started): the next call rolls it
                    before = inst.store + inst.local_sum
                    inst.store = self._store.get((idx, key), 0)
                    inst.drop_local(epoch)
                    inst.headroom += before - inst.store - inst.local_sum  # reservations stay
                    cb = inst.cb
                    spent_n = inst.store + inst.local_sum
                    if cb.budget.period in ROLLING:
                        # no period to reset: a threshold re-arms when spend falls back below it
                        while inst.next_i > 0 and spent_n < cb.thresholds_n[inst.next_i - 1]:
                            inst.next_i -= 1
                    else:
                        inst.next_i = max(inst.next_i, self._seeded_next(inst))
                    inst.arm()
                    if inst.local_sum >= inst.warn_local:
                        self._fire_thresholds(inst, now)
                self.refreshes += 1
                self.last_refresh_ns = now
            self._save_snapshot()
            return True

    def _run(self) -> None:
        if self._ready:
            # enforcing with cold-start figures already: the first store read waits for the
            # refresh interval like every later one (a short-lived process never pays for it)
            next_refresh = time.monotonic() + self.refresh_interval
        else:
            try:
                self.refresh()
            finally:
                self._ready_event.set()
            next_refresh = time.monotonic() + self.refresh_interval
        while not self._stop.is_set():
            self._wake.wait(max(0.0, min(1.0, next_refresh - time.monotonic())))
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._check_periods()
                self._drain()
                if time.monotonic() >= next_refresh:
                    self.refresh()
                    next_refresh = time.monotonic() + self.refresh_interval
            except Exception:  # the budget thread must survive anything
                logger.exception("tokentrail: budget thread error")

    def deliver(self) -> int:
        """Deliver queued events now: the public form of what the thread does, for a manager
        built with start=False (Tokentrail.budgets_without_thread(), the demo)."""
        return self._drain()

    def _drain(self) -> int:
        """Deliver queued events: the store (through the exporter), logging, callables, webhooks."""
        with self._drain_lock:
            with self._lock:
                events, self._events = self._events, []
            if not events:
                return 0
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

    def shutdown(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.lock_timeout + 5)
        self._save_snapshot()
        self._drain()
        self._webhooks.close(timeout=1.0)

    @property
    def webhooks(self) -> WebhookSender:
        return self._webhooks


def _fork_hook(ref: weakref.ReferenceType[BudgetManager]) -> Callable[[], None]:
    def hook() -> None:
        manager = ref()
        if manager is not None:
            manager._after_fork()

    return hook


def _zone(name: str) -> Any:
    from .periods import _zone as zone

    return zone(name)
