"""The machine's budget ledger: one memory-mapped file under TOKENTRAIL_HOME, changed under an
exclusive `flock` (plus a thread lock: flock does not order the threads of one process).

Chosen over SQLite in WAL mode by measurement (bench/budget_check.py prints both): a check
here is a lock, a few struct reads and writes in shared memory, an unlock (a few µs); a
SQLite write transaction costs tens of µs and a call needs two. Nothing is fsynced: the
ledger guards against concurrent processes, not power loss (the store keeps the record).

Layout (little-endian): a 64-byte header, SLOTS slots of SLOT_SIZE bytes (open addressing on
the 16-byte key), RESERVATIONS entries of ENTRY_SIZE bytes: one per call (a call in more than
PER_ENTRY budgets takes several), its pid, expiry and (slot, period, amount) per budget
(ledger_entries.py). A slot: key, period, end, spent, reserved, floor, fired thresholds, rolling
width, the period whose forecast was claimed, then a rolling window's buckets or a calendar
period's carry (rollover; a pool member's debt, negative).
`FileLedger(None)` is the same ledger in anonymous memory: this process only.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .ledger import BUCKETS, Refused
from .ledger_entries import (
    _BUCKET,
    _CARRY,
    _EMPTY,
    _FIRED,
    _FLOOR,
    _FORECAST,
    _HEAD,
    _HEADS,
    _HI,
    _KEY_WINDOW,
    _NEVER,
    _Q,
    _RESERVED,
    _SLOT,
    _SPENT,
    _SR,
    _SRF,
    MAGIC,
    NB,
    RESERVATIONS,
    SIZE,
    SLOT_SIZE,
    SLOTS,
    SLOTS_AT,
    Entries,
    LedgerFull,
)

__all__ = ["FileLedger", "LedgerFull"]



class FileLedger(Entries):
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.name = "memory" if path is None else f"file {path}"
        self._tlock = threading.Lock()
        self._fd = -1
        self._last_dead_check = 0.0
        # (item, period, carry) of the periods this process started (the manager records them)
        self.carried: list[tuple[Any, int, int]] = []
        self._open()

    def _open(self) -> None:
        if self.path is None:
            self._mm = mmap.mmap(-1, SIZE)
            _HEAD.pack_into(self._mm, 0, MAGIC, SLOTS, RESERVATIONS, 0, 0, _NEVER)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.fstat(fd).st_size < SIZE:
                os.ftruncate(fd, SIZE)  # sparse: only the pages used take disk
            mm = mmap.mmap(fd, SIZE)
            magic, slots, res, *_ = _HEAD.unpack_from(mm, 0)
            if magic != MAGIC:
                if magic != bytes(8):
                    raise OSError(f"{self.path} is not a tokentrail budget ledger")
                _HEAD.pack_into(mm, 0, MAGIC, SLOTS, RESERVATIONS, 0, 0, _NEVER)
            elif (slots, res) != (SLOTS, RESERVATIONS):
                raise OSError(f"{self.path} has another layout; remove it when no process uses it")
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        self._fd, self._mm = fd, mm

    def reopen(self) -> None:
        self._tlock = threading.Lock()
        if self.path is None:
            return  # anonymous memory: the child has its own copy
        # the inherited descriptor shares the parent's flock: take our own
        old = self._fd
        self._open()
        if old >= 0:
            os.close(old)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # -- locking -----------------------------------------------------------------------------

    def _lock(self) -> None:
        self._tlock.acquire()
        if self._fd >= 0:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:  # unlock the thread lock, then re-raise
                self._tlock.release()
                raise

    def _unlock(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._tlock.release()

    # -- slots -------------------------------------------------------------------------------

    def _slot(self, item: Any, now: int) -> int:
        """The byte offset of the item's slot (created, or rolled into the item's period)."""
        mm = self._mm
        i = item.slot
        if i >= 0:
            off = SLOTS_AT + i * SLOT_SIZE
            key, window = _KEY_WINDOW.unpack_from(mm, off)
            if key == item.lkey and (window == item.window_key or item.rolling_ns):
                item.off, item.kw = off, (key, window)
                return off  # cached, same period
            if key != item.lkey:
                i = -1  # reused by another budget since (its period ended)
        if i < 0:
            i = self._find(item, now)
            item.slot = i
            off = SLOTS_AT + i * SLOT_SIZE
        if item.rolling_ns == 0:
            _, window, _, spent, _, floor, _, _, _, carry = _HEADS.unpack_from(mm, off)
            if window < item.window_key:  # a new period: it starts empty
                _SLOT.pack_into(mm, off, item.lkey, item.window_key, item.hi, 0, 0, 0, 0, 0)
                if item.carries:  # rollover: this process enters the period first, it carries
                    carry = item.carry_from(window, max(spent, floor), carry) if window > 0 else 0
                    _Q.pack_into(mm, off + _CARRY, carry)
                    if window > 0:
                        self.carried.append((item, item.window_key, carry))
        item.off, item.kw = off, (item.lkey, item.window_key)
        return off

    def _find(self, item: Any, now: int) -> int:
        mm = self._mm
        start = int.from_bytes(item.lkey[:8], "little") % SLOTS
        reusable = -1
        for n in range(SLOTS):
            i = (start + n) % SLOTS
            off = SLOTS_AT + i * SLOT_SIZE
            key = mm[off : off + 16]
            if key == item.lkey:
                return i
            if key == _EMPTY:
                break
            if reusable < 0:
                _, _, hi, _, reserved, *_ = _SLOT.unpack_from(mm, off)
                if hi <= now and reserved == 0:
                    reusable = i
        else:
            if reusable < 0:
                raise LedgerFull(f"the budget ledger {self.name} has no free slot ({SLOTS} budget instances)")
            i = reusable
        if reusable >= 0:
            i = reusable
        off = SLOTS_AT + i * SLOT_SIZE
        mm[off : off + SLOT_SIZE] = bytes(SLOT_SIZE)
        _SLOT.pack_into(mm, off, item.lkey, item.window_key, item.hi, 0, 0, 0, 0, item.rolling_ns)
        return i

    def _spent(self, off: int, rolling: int, now: int) -> int:
        mm = self._mm
        if rolling == 0:
            spent = _Q.unpack_from(mm, off + _SPENT)[0]
        else:
            width = rolling // BUCKETS
            oldest = (now - rolling) // width
            spent = 0
            for b in range(NB):
                bid, amount = _BUCKET.unpack_from(mm, off + 80 + b * _BUCKET.size)
                if bid >= oldest and amount:
                    spent += amount
        floor = _Q.unpack_from(mm, off + _FLOOR)[0]
        return spent if spent >= floor else floor

    def _add_spent(self, off: int, rolling: int, amount: int, now: int) -> None:
        mm = self._mm
        if rolling == 0:
            _Q.pack_into(mm, off + _SPENT, _Q.unpack_from(mm, off + _SPENT)[0] + amount)
            return
        bid = now // (rolling // BUCKETS)
        at = off + 80 + (bid % NB) * _BUCKET.size
        old_id, old = _BUCKET.unpack_from(mm, at)
        _BUCKET.pack_into(mm, at, bid, amount + (old if old_id == bid else 0))
        _Q.pack_into(mm, off + _HI, now + rolling)  # the slot is free again once all of it aged out

    # -- reservations ------------------------------------------------------------------------

    def reserve(self, items: Sequence[Any], amounts: list[int], now: int, expires: int) -> list[int]:
        mm = self._mm
        head = _HEADS.unpack_from
        self._lock()
        try:
            # one read per slot: it is still the item's (key and period), and its figures
            offs: list[int] = []
            after: list[int] = []  # each slot's reserved once this call is added
            refused = False
            for n, it in enumerate(items):
                off = it.off
                if off >= 0:
                    key, window, _, spent, reserved, floor, _, _, _, carry = head(mm, off)
                    if key != it.lkey or window != it.window_key:
                        off = -1
                if off < 0:
                    off = self._slot(it, now)
                    _, _, _, spent, reserved, floor, _, _, _, carry = head(mm, off)
                offs.append(off)
                amount = amounts[n]
                after.append(reserved + amount)
                if it.block and not refused:
                    if it.rolling_ns:
                        spent = self._spent(off, it.rolling_ns, now)
                    elif floor > spent:
                        spent = floor
                    refused = amount > (it.limit_n + carry if it.carries else it.limit_n) - spent - reserved
            if refused:
                try:
                    self._check(items, amounts, offs, now)
                except Refused:
                    if not self._sweep(now):
                        raise
                    self._check(items, amounts, offs, now)
                after = [_Q.unpack_from(mm, off + _RESERVED)[0] + a for off, a in zip(offs, amounts)]  # noqa: B905
            entries = self._entries(items, amounts, offs, expires)
            q_pack = _Q.pack_into
            for off, r in zip(offs, after):  # noqa: B905 (one length by construction)
                q_pack(mm, off + _RESERVED, r)
            return entries
        finally:
            self._unlock()

    def _check(self, items: Sequence[Any], amounts: list[int], offs: list[int], now: int) -> None:
        mm = self._mm
        for n, it in enumerate(items):
            if it.block:
                off = offs[n]
                limit = it.limit_n
                if it.rolling_ns:
                    committed = self._spent(off, it.rolling_ns, now) + _Q.unpack_from(mm, off + _RESERVED)[0]
                else:
                    spent, reserved, floor = _SRF.unpack_from(mm, off + _SPENT)
                    committed = (spent if spent >= floor else floor) + reserved
                    if it.carries:
                        limit += _Q.unpack_from(mm, off + _CARRY)[0]
                if amounts[n] > limit - committed:
                    raise Refused(n, committed, limit)

    def settle(self, handle: list[int], items: Sequence[Any], amounts: list[int], costs: list[int], now: int) -> list[tuple[int, int, int, int]]:
        out: list[tuple[int, int, int, int]] = []
        mm = self._mm
        head, sr, q_unpack, q_pack = _HEADS.unpack_from, _SR.pack_into, _Q.unpack_from, _Q.pack_into
        self._lock()
        try:
            held = self._unhold(handle)
            for n, it in enumerate(items):
                off = it.off
                if off >= 0:
                    key, window, _, spent, reserved, floor, fired, _, _, carry = head(mm, off)
                    if key != it.lkey or window != it.window_key:
                        off = -1
                if off < 0:
                    off = self._slot(it, now)
                    _, window, _, spent, reserved, floor, fired, _, _, carry = head(mm, off)
                h = held.pop(off, None)
                if h is not None and h[0] == window:
                    reserved -= h[1]
                cost = costs[n]
                th = it.thresholds_n
                if not it.rolling_ns:
                    if cost and window == it.window_key:
                        spent += cost
                    sr(mm, off + _SPENT, spent, reserved)
                    if floor > spent:
                        spent = floor
                    before = fired
                else:
                    q_pack(mm, off + _RESERVED, reserved)
                    if cost:
                        self._add_spent(off, it.rolling_ns, cost, now)
                    spent = self._spent(off, it.rolling_ns, now)
                    fired = q_unpack(mm, off + _FIRED)[0]
                    while fired > 0 and spent < th[fired - 1]:  # no period to reset: re-arm
                        fired -= 1
                    before = fired
                    q_pack(mm, off + _FIRED, fired)
                if fired < len(th) and spent >= th[fired]:
                    while fired < len(th) and spent >= th[fired]:
                        fired += 1
                    q_pack(mm, off + _FIRED, fired)
                out.append((spent, before, fired, carry if it.carries else 0))
            if held:  # slots of the call no longer the items' (reused since): still give back
                self._give_back(held)
        finally:
            self._unlock()
        return out

    def carry(self, item: Any, now: int) -> int:
        """The carry into the item's current period (0 without rollover)."""
        if not item.carries:
            return 0
        self._lock()
        try:
            return int(_Q.unpack_from(self._mm, self._slot(item, now) + _CARRY)[0])
        finally:
            self._unlock()

    def claim_forecast(self, item: Any, now: int) -> bool:
        """True for the first caller in the item's period (any process): it alerts `forecast`."""
        self._lock()
        try:
            off = self._slot(item, now)
            mark = item.window_key + 1  # a period's key + 1: never 0 (the empty slot's value)
            if _Q.unpack_from(self._mm, off + _FORECAST)[0] == mark:
                return False
            _Q.pack_into(self._mm, off + _FORECAST, mark)
            return True
        finally:
            self._unlock()

    def release(self, handle: list[int], items: Sequence[Any], amounts: list[int]) -> None:
        self._lock()
        try:
            for e in handle:
                self._free(e)
        finally:
            self._unlock()

    def set_floor(self, item: Any, n: int, now: int) -> None:
        self._lock()
        try:
            off = self._slot(item, now)
            old = _Q.unpack_from(self._mm, off + _FLOOR)[0]
            # calendar and total spend only grows in a period; a rolling window's falls too
            if item.rolling_ns or n > old:
                _Q.pack_into(self._mm, off + _FLOOR, n)
        finally:
            self._unlock()

    def figures(self, item: Any, now: int) -> tuple[int, int]:
        self._lock()
        try:
            off = self._slot(item, now)
            return self._spent(off, item.rolling_ns, now), _Q.unpack_from(self._mm, off + _RESERVED)[0]
        finally:
            self._unlock()

    def fired(self, item: Any, now: int) -> int:
        self._lock()
        try:
            return int(_Q.unpack_from(self._mm, self._slot(item, now) + _FIRED)[0])
        finally:
            self._unlock()
