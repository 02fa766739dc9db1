"""The shared budget ledger: what every process has spent and holds reserved, per budget and
scope value, updated atomically so that together they never go above a hard limit.

    budget_backend = "file"                 # default: TOKENTRAIL_HOME/budgets.ledger, one machine
    budget_backend = "redis://host:6379/0"  # every host that names the same Redis
    budget_backend = "memory"               # this process only (tests, one-off scripts)

Per budget instance (a budget and one scope value, in its current period) the ledger holds:

    spent     settled spend recorded through the ledger (rolling windows: in 17 time buckets)
    floor     the store's figure at the last refresh (spend made before the ledger existed)
    reserved  worst cases of calls in flight, each an entry that expires
    fired     how many warn thresholds have alerted this period (exactly once, any process)

A call fits when max(spent, floor) + reserved + its worst case <= limit; the check and the
reservation are one atomic step (a file lock, or one Lua script in Redis). A reservation not
settled or released by its expiry (its process was killed) stops counting; on the file ledger
a reservation of a process that no longer exists stops counting at once.

Times are the runtime's injected clock (ns), never the ledger's own: expiry is clock-driven.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

__all__ = ["DEFAULT_RESERVATION_SECONDS", "Ledger", "Refused", "open_ledger", "slot_key"]

DEFAULT_RESERVATION_SECONDS = 600.0
BACKEND_ENV = "TOKENTRAIL_BUDGET_BACKEND"
RESERVATION_ENV = "TOKENTRAIL_BUDGET_RESERVATION_SECONDS"
BUCKETS = 16  # a rolling window is kept in BUCKETS (+1 partly outside) time buckets


class Refused(Exception):
    """A blocking budget has no room: `index` into the items, `committed` nano-dollars."""

    def __init__(self, index: int, committed: int, limit: int = -1) -> None:
        super().__init__(index, committed)
        self.index = index
        self.committed = committed
        self.limit = limit  # the limit refused against (with the period's carry); -1: the item's


class Item(Protocol):
    """What the ledger reads of a budget instance (budgets.instances.Inst)."""

    lkey: bytes  # 16 bytes: slot_key(fingerprint, scope key)
    window_key: int
    rolling_ns: int
    hi: int  # when the period ends (ns), or a huge number
    slot: int  # the file ledger's cached slot index (-1: not looked up yet)
    off: int  # the file ledger's cached byte offset (-1: look it up; set so when the period changes)
    kw: tuple[bytes, int]  # the (key, window) found at `off` when it was cached
    limit_n: int
    block: bool
    thresholds_n: tuple[int, ...]
    carries: bool  # its limit grows by the period's carry (rollover), which the ledger keeps


class Ledger(Protocol):
    name: str

    def reserve(self, items: Sequence[Any], amounts: list[int], now: int, expires: int) -> Any:
        """Reserve `amounts[i]` in `items[i]` for every item, or raise Refused (nothing
        reserved). Returns the handle settle/release take."""

    def settle(self, handle: Any, items: Sequence[Any], amounts: list[int], costs: list[int], now: int) -> list[tuple[int, int, int, int]]:
        """Turn the reservation into each item's cost; per item (spent after, thresholds fired before,
        thresholds fired after, the period's carry): the caller alerts the newly fired ones."""

    def release(self, handle: Any, items: Sequence[Any], amounts: list[int]) -> None: ...

    def claim_forecast(self, item: Any, now: int) -> bool:
        """True for the first caller in the item's period, in any process: it sends the alert."""

    def set_floor(self, item: Any, n: int, now: int) -> None: ...

    def figures(self, item: Any, now: int) -> tuple[int, int]:
        """(spent, reserved) now: spent is max(ledger spend, floor)."""

    def reopen(self) -> None:
        """After a fork: the child's own handle to the same ledger."""

    def close(self) -> None: ...


def slot_key(fingerprint: str, key: tuple[str, ...]) -> bytes:
    return hashlib.blake2b("\x1f".join((fingerprint, *key)).encode(), digest_size=16).digest()


def backend_of(settings: Any) -> str:
    import os

    raw = getattr(settings, "budget_backend", None) or os.environ.get(BACKEND_ENV) or "file"
    return str(raw)


def reservation_ns(settings: Any) -> int:
    import os

    raw = getattr(settings, "budget_reservation_seconds", None) or os.environ.get(RESERVATION_ENV)
    try:
        seconds = float(raw) if raw else DEFAULT_RESERVATION_SECONDS
    except ValueError:
        seconds = DEFAULT_RESERVATION_SECONDS
    return int((seconds if seconds > 0 else DEFAULT_RESERVATION_SECONDS) * 1_000_000_000)


def open_ledger(settings: Any) -> Ledger:
    """The ledger `budget_backend` names: "file" (default), "memory" or a redis:// URL."""
    from ..errors import ConfigError

    backend = backend_of(settings)
    if backend == "file" or backend.startswith("file://"):
        from pathlib import Path

        from .ledger_file import FileLedger

        path = Path(backend[len("file://") :]) if backend.startswith("file://") else Path(settings.home) / "budgets.ledger"
        return FileLedger(path)
    if backend == "memory":
        from .ledger_file import FileLedger

        return FileLedger(None)
    if backend.startswith(("redis://", "rediss://", "unix://")):
        from .ledger_redis import RedisLedger

        return RedisLedger(backend)
    raise ConfigError(
        "budget_backend", f"{backend!r} is not a budget ledger", 'use "file" (default), "memory" or "redis://host:6379/0"'
    )
