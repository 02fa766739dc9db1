"""The file ledger's layout and its reservation entries (a mixin of ledger_file.FileLedger).

A call's reservation is one entry (PER_ENTRY budgets each; a call in more takes several): the
process id, the expiry, and per budget (slot offset, period, amount). An entry whose expiry
passed, or whose process is gone, is freed by a sweep when a call is refused.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from collections.abc import Sequence
from typing import Any

from ..store.health import pid_alive
from .ledger import BUCKETS

__all__ = ["Entries", "LedgerFull"]

MAGIC = b"TTLEDG01"
SLOTS = 65536  # budget instances (budget x scope value) alive at once; ~23 MB sparse
RESERVATIONS = 16384
_HEAD = struct.Struct("<8sIIqqq")  # magic, slots, reservations, cursor, high water, min expiry
_SLOT = struct.Struct("<16sqqqqqqq")  # key, window, hi, spent, reserved, floor, fired, rolling_ns
_BUCKET = struct.Struct("<qq")  # bucket id, amount
_RES = struct.Struct("<iiq")  # items (0 = free), pid, expires
_ITEM = struct.Struct("<qqq")  # slot, window, amount
PER_ENTRY = 6
ENTRY_SIZE = _RES.size + PER_ENTRY * _ITEM.size
NB = BUCKETS + 1
SLOT_SIZE = 80 + NB * _BUCKET.size
HEAD_SIZE = 64
SLOTS_AT = HEAD_SIZE
RES_AT = SLOTS_AT + SLOTS * SLOT_SIZE
SIZE = RES_AT + RESERVATIONS * ENTRY_SIZE
_EMPTY = bytes(16)
_NEVER = 2**62
# field offsets inside a slot
_WINDOW, _HI, _SPENT, _RESERVED, _FLOOR, _FIRED, _ROLLING = 16, 24, 32, 40, 48, 56, 64
_Q = struct.Struct("<q")
_I32 = struct.Struct("<i")
_KEY_WINDOW = struct.Struct("<16sq")
_CURSORS = struct.Struct("<qqq")
_DEAD_CHECK_S = 0.5
_FORECAST = 72  # the period (window key) whose forecast alert was claimed
# an entry with k items in one struct: (items, pid, expires, then slot offset, window, amount per item)
_ENTRIES = [struct.Struct("<iiq" + "qqq" * k) for k in range(PER_ENTRY + 1)]
_SRF = struct.Struct("<qqq")  # at a slot's spent: spent, reserved, floor
_SR = struct.Struct("<qq")  # at a slot's spent: spent, reserved
# a slot's key, window, hi, spent, reserved, floor, fired, rolling, forecast, carry
_HEADS = struct.Struct("<16sqqqqqqqqq")
_CARRY = 80  # calendar slots (no buckets): the period's carry (rollover)


class LedgerFull(Exception):
    pass


class Entries:
    """Reservation entries in the mapped file; the caller holds the ledger's lock."""

    name: str
    _mm: mmap.mmap
    _fd: int
    _last_dead_check: float

    def _entries(self, items: Sequence[Any], amounts: list[int], offs: list[int], expires: int) -> list[int]:
        """Record the call's reservation (PER_ENTRY budgets an entry); the caller adds the
        amounts to the slots' reserved."""
        mm = self._mm
        cursor, high, min_exp = _CURSORS.unpack_from(mm, 16)
        pid = os.getpid()
        flat: list[int] = []
        for it, off, a in zip(items, offs, amounts):  # noqa: B905
            if a:
                flat += (off, it.window_key, a)
        entries: list[int] = []
        i32 = _I32.unpack_from
        step = 3 * PER_ENTRY
        for c in range(0, len(flat), step):
            chunk = flat if len(flat) <= step else flat[c : c + step]
            for _ in range(RESERVATIONS):
                at = RES_AT + cursor * ENTRY_SIZE
                if not i32(mm, at)[0]:
                    break
                cursor = cursor + 1 if cursor + 1 < RESERVATIONS else 0
            else:
                for e in entries:  # nothing reserved: the amounts were not added yet
                    _I32.pack_into(mm, RES_AT + e * ENTRY_SIZE, 0)
                raise LedgerFull(f"the budget ledger {self.name} holds {RESERVATIONS} reservations")
            k = len(chunk) // 3
            _ENTRIES[k].pack_into(mm, at, k, pid, expires, *chunk)
            entries.append(cursor)
            if cursor >= high:
                high = cursor + 1
            cursor = cursor + 1 if cursor + 1 < RESERVATIONS else 0
        _CURSORS.pack_into(mm, 16, cursor, high, min_exp if min_exp <= expires else expires)
        return entries

    def _unhold(self, handle: list[int]) -> dict[int, tuple[int, int]]:
        """Free a call's entries; what they still held: slot offset -> (period, amount)."""
        mm = self._mm
        held: dict[int, tuple[int, int]] = {}
        for e in handle:
            at = RES_AT + e * ENTRY_SIZE
            count = _I32.unpack_from(mm, at)[0]
            if count:  # else expired and swept
                v = _ENTRIES[count].unpack_from(mm, at)
                _I32.pack_into(mm, at, 0)
                for j in range(3, 3 + 3 * count, 3):
                    held[v[j]] = (v[j + 1], v[j + 2])
        return held

    def _give_back(self, held: dict[int, tuple[int, int]]) -> None:
        q_unpack, q_pack = _Q.unpack_from, _Q.pack_into
        mm = self._mm
        for off, (window, amount) in held.items():
            # a slot that rolled into a new period had its reserved reset (a rolling window's
            # slot keeps window 0)
            if q_unpack(mm, off + _WINDOW)[0] == window:
                q_pack(mm, off + _RESERVED, q_unpack(mm, off + _RESERVED)[0] - amount)

    def _free(self, e: int) -> bool:
        """Free entry `e`; True when it still held money (not expired or swept)."""
        held = self._unhold([e])
        self._give_back(held)
        return bool(held)

    def _sweep(self, now: int) -> bool:
        """Free expired entries and those of dead processes; True when any money came back."""
        mm = self._mm
        cursor, high, min_exp = struct.unpack_from("<qqq", mm, 16)
        check_dead = self._fd >= 0 and time.monotonic() - self._last_dead_check >= _DEAD_CHECK_S
        if now < min_exp and not check_dead:
            return False
        if check_dead:
            self._last_dead_check = time.monotonic()
        alive: dict[int, bool] = {os.getpid(): True}
        freed = False
        new_min = _NEVER
        for e in range(high):
            count, pid, expires = _RES.unpack_from(mm, RES_AT + e * ENTRY_SIZE)
            if not count:
                continue
            dead = False
            if check_dead:
                if pid not in alive:
                    alive[pid] = pid_alive(pid)
                dead = not alive[pid]
            if expires <= now or dead:
                freed = self._free(e) or freed
            else:
                new_min = min(new_min, expires)
        struct.pack_into("<qqq", mm, 16, cursor, high, new_min)
        return freed
