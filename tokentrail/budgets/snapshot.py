"""What the last process knew of each budget's spend, kept in TOKENTRAIL_HOME, so a new process
enforces budgets from its first call without waiting for the store (opening the embedded
store takes about half a second; serverless functions and CLI tools start often).

`cache/budgets.json` holds, per budget (named and defined as configured: another definition
is another budget) and scope value, the period it is for and what was spent in it: the
store's figure at the process's last refresh plus the spend it settled since. A process writes
it after each refresh (from the budget thread) and when it shuts down; the next one reads it
once when its budget manager starts. Until its own first refresh, a process counts that
figure as the store's: the figure can only miss what other processes spent after it was
written, the bound budgets across processes already have (one refresh interval). Thresholds
already alerted are kept too, so a new process does not repeat their alerts.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .model import CompiledBudget

logger = logging.getLogger("tokentrail.budgets")

VERSION = 1
Fired = tuple[str, str, float, int]  # (budget, scope value, threshold, period start in µs)


def path_for(home: Path) -> Path:
    return Path(home) / "cache" / "budgets.json"


def fingerprint(cb: CompiledBudget) -> str:
    """A budget's identity for its spend: name, period, time zone and scope (not the limit,
    which does not change what was spent)."""
    b = cb.budget
    scope = sorted((str(k), str(v)) for k, v in (b.scope or {}).items())
    return json.dumps([b.name, b.period, b.timezone, scope], separators=(",", ":"))


class Snapshot:
    """budget fingerprint -> (period key, {scope key: nano-dollars}); fired thresholds."""

    def __init__(self, budgets: dict[str, tuple[int, dict[tuple[str, ...], int]]], fired: set[Fired]) -> None:
        self.budgets = budgets
        self.fired = fired


def read(path: Path) -> Snapshot | None:
    try:
        data = json.loads(path.read_text())
        if data.get("version") != VERSION:
            return None
        budgets = {
            str(fp): (int(entry["window"]), {tuple(str(k) for k in key): int(n) for key, n in entry["spent"]})
            for fp, entry in data["budgets"].items()
        }
        fired = {(str(b), str(s), float(t), int(us)) for b, s, t, us in data.get("fired", ())}
        return Snapshot(budgets, fired)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        logger.debug("tokentrail: ignoring the budget snapshot at %s (%s)", path, e)
        return None


_write_lock = threading.Lock()


def write(
    path: Path,
    budgets: Mapping[str, tuple[int, Mapping[tuple[str, ...], int]]],
    fired: Iterable[Fired],
) -> None:
    """Replace the snapshot (a temporary file, then a rename: readers never see half a file)."""
    data = {
        "version": VERSION,
        "budgets": {fp: {"window": w, "spent": [[list(k), n] for k, n in spent.items()]} for fp, (w, spent) in budgets.items()},
        "fired": sorted([list(f) for f in fired]),
    }
    with _write_lock:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_text(json.dumps(data, separators=(",", ":")))
            os.replace(tmp, path)
        except OSError as e:
            logger.debug("tokentrail: could not write the budget snapshot at %s (%s)", path, e)


class ColdStart:
    """What a new process reads before enforcing: whether the embedded store is empty, and
    the snapshot. Read by `prefetch` when tokentrail is configured (off the first call's path:
    file reads there would stall an asyncio loop), else when the budget manager starts."""

    def __init__(self, settings: Any) -> None:
        self.path = path_for(settings.home)
        self.empty = store_is_empty(settings)
        self.snapshot = None if self.empty else read(self.path)


_prefetched: dict[Path, ColdStart] = {}


def prefetch(settings: Any) -> None:
    cold = ColdStart(settings)
    _prefetched[cold.path] = cold


def take(settings: Any) -> ColdStart:
    """The prefetched reading for this home (once), else a fresh one."""
    cold = _prefetched.pop(path_for(settings.home), None)
    return cold if cold is not None else ColdStart(settings)


def store_is_empty(settings: Any) -> bool:
    """True when the embedded store holds no span and none is waiting in the spool: every
    budget has spent nothing (a fresh home)."""
    if not settings.embedded:
        return False
    if settings.embedded_path.exists():
        return False
    spool = settings.spool_dir
    try:
        return not any(p.is_file() for p in spool.rglob("*"))
    except OSError:
        return not spool.exists()
