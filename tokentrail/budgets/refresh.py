"""The budget manager's background side: the first read of the store (or a new process's
cold-start figures), the refresh that gives the ledger the store's spend as floors, event
delivery, and what a forked worker does.

A new process must not forget what was spent before it started, yet its first call must not
wait for the store (about half a second for the embedded one). The ledger remembers what was
spent through it; for spend it never saw (a ledger made after the store had spans), each
instance's floor is the store's figure: until its first refresh a process takes it from the
last process's snapshot (snapshot.py), or nothing when the embedded store and the spool are
empty (a fresh home). Only a process with neither reads the store at once, and its first
`reserve` waits for that (at most `initial_wait`, 10 s).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import snapshot
from .alerts import WebhookSender
from .host import Host, suppressed
from .instances import Inst, nanos
from .model import CompiledBudget
from .periods import window
from .spend import fetch_spend

__all__ = ["Background"]

logger = logging.getLogger("tokentrail.budgets")

# chdb cannot be used in a process forked after it was opened (it hangs): remember we opened it
_embedded_opened = False


class Background:
    """A mixin of BudgetManager: its refresh thread, cold start, snapshot and fork handling."""

    compiled: list[CompiledBudget]
    settings: Any
    lock_timeout: float
    initial_wait: float
    refresh_interval: float
    refreshes: int
    last_refresh_ns: int | None
    _rt: Host
    _ledger: Any
    _lock: threading.Lock
    _insts: dict[tuple[int, tuple[str, ...]], Inst]
    _store: dict[tuple[int, tuple[str, ...]], int]
    _store_windows: dict[int, int]
    _fingerprints: list[str]
    _snapshot_path: Any
    _thread: threading.Thread | None
    _stop: threading.Event
    _wake: threading.Event
    _ready_event: threading.Event
    _ready: bool
    _refresh_lock: threading.Lock
    _drain_lock: threading.Lock
    _events: list[Any]
    _webhooks: WebhookSender
    _refresh_failed: bool
    _no_store: bool

    def _check_periods(self) -> None:  # Events has it (first in BudgetManager's bases)
        raise NotImplementedError

    def _drain(self) -> int:
        raise NotImplementedError

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name="tokentrail-budgets", daemon=True)
        self._thread.start()

    def _after_fork(self) -> None:
        closed = self._stop.is_set()
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._events = []  # the parent delivers its own
        self._ledger.reopen()
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
        self._store, self._store_windows = store, windows
        return True

    def _save_snapshot(self) -> None:
        """Write what this process knows now (store figures, ledger figures) for the next one."""
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
            for (idx, key), inst in self._insts.items():
                entry = budgets.get(self._fingerprints[idx])
                if entry is not None and inst.window_key == entry[0]:
                    entry[1][key] = max(entry[1].get(key, 0), inst.spent_n)
        snapshot.write(self._snapshot_path, budgets, ())

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
        """Read every budget's spend from the store now and give it to the ledger as each
        instance's floor (spend the ledger may not have seen); True when it worked. Under
        suppress-instrumentation: a user's HTTP / database instrumentation records none of it."""
        with self._refresh_lock, suppressed():
            try:
                self._rt.provider.force_flush(int(self.lock_timeout * 1000))
                now = self._rt.now_ns()
                items = [(cb, window(cb.budget.period, cb.budget.timezone, now)) for cb in self.compiled]
                with self._client() as client:
                    spend = fetch_spend(client, items)
            except Exception as e:  # a store down or refusing: enforce with the ledger, said once
                log = logger.debug if self._refresh_failed else logger.warning
                log("tokentrail: budget refresh failed (%s); enforcing with the ledger alone until it works", e)
                self._refresh_failed = True
                return False
            self._refresh_failed = False
            with self._lock:
                self._store = {k: nanos(s.spent_usd) for k, s in spend.items()}
                self._store_windows = {cb.index: w.key for cb, w in items}
                current = [(inst, self._store.get((idx, key), 0)) for (idx, key), inst in self._insts.items() if inst.window_key == items[idx][1].key]
                self.refreshes += 1
                self.last_refresh_ns = now
            for inst, n in current:
                if n or inst.rolling_ns:
                    self._ledger.set_floor(inst, n, now)
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

