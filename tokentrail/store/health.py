"""How each exporting process is doing, kept where `tokentrail status` (another process) reads it.

One small JSON file per process in `$TOKENTRAIL_HOME/status/`, replaced atomically: the last
export error (a plain one-line "why"), whether the server answered last time, what went to the
spool, what was lost and its known cost. A process writes it only when something happens (an
error, a recovery, a loss, its shutdown after one of those), at most once a second, never on
the hot path. The lasting record of losses is the store's `tokentrail.lost_spans`; this file is
what the status shows while the store cannot be reached.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import clock

STATUS_DIR = "status"
_MIN_INTERVAL_S = 1.0
_KEEP_DEAD_S = 7 * 86400  # a dead process's file is kept this long after its last write


def status_dir(home: Path) -> Path:
    return home / STATUS_DIR


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns // 1_000_000_000))


@dataclass
class ExportHealth:
    """One process's export state; methods are thread-safe and never raise."""

    home: Path
    service_name: str = ""
    project: str = ""
    store: str = ""
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    started_ns: int = field(default_factory=clock.now_ns)
    last_error: str | None = None
    last_error_ns: int | None = None
    failing_since_ns: int | None = None
    last_ok_ns: int | None = None
    spooled_batches: int = 0
    lost: dict[str, Any] = field(default_factory=dict)
    _dirty: bool = False
    _written: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def path(self) -> Path:
        return status_dir(self.home) / f"export-{self.host}-{self.pid}.json"

    def error(self, why: str) -> None:
        now = clock.now_ns()
        with self._lock:
            self.last_error, self.last_error_ns = why, now
            if self.failing_since_ns is None:
                self.failing_since_ns = now
            self._dirty = True
        self.save()

    def ok(self) -> None:
        """The server answered: only a change from failing is worth a write."""
        with self._lock:
            self.last_ok_ns = clock.now_ns()
            if self.failing_since_ns is None:
                return
            self.failing_since_ns = None
            self._dirty = True
        self.save(force=True)

    def spooled(self) -> None:
        with self._lock:
            self.spooled_batches += 1

    def record_loss(self, totals: dict[str, Any]) -> None:
        with self._lock:
            self.lost = dict(totals)
            self._dirty = True
        self.save()

    def save(self, *, force: bool = False) -> None:
        with self._lock:
            if not self._dirty or (not force and time.monotonic() - self._written < _MIN_INTERVAL_S):
                return
            data = {
                "pid": self.pid,
                "host": self.host,
                "service_name": self.service_name,
                "project": self.project,
                "store": self.store,
                "started_at": _iso(self.started_ns),
                "updated_at": _iso(clock.now_ns()),
                "last_error": self.last_error,
                "last_error_at": _iso(self.last_error_ns),
                "failing_since": _iso(self.failing_since_ns),
                "last_ok_at": _iso(self.last_ok_ns),
                "spooled_batches": self.spooled_batches,
                "lost": self.lost,
            }
            self._dirty = False
            self._written = time.monotonic()
        try:
            d = status_dir(self.home)
            d.mkdir(parents=True, exist_ok=True)
            tmp = d / f".{self.path.name}.tmp"
            tmp.write_text(json.dumps(data, indent=1))
            os.replace(tmp, self.path)
        except OSError:
            pass  # the status is a convenience: the store's lost_spans is the record

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self.pid = os.getpid()
        self.started_ns = clock.now_ns()
        self.last_error = self.last_error_ns = self.failing_since_ns = None
        self.spooled_batches = 0
        self.lost = {}
        self._dirty = False


def pid_alive(pid: int) -> bool:
    """Whether a process of this pid runs on this machine (one we may not signal counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_all(home: Path) -> list[dict[str, Any]]:
    """Every exporting process's last state, newest first, each with `alive` (on this host);
    files of processes gone for a week are removed."""
    d = status_dir(home)
    if not d.is_dir():
        return []
    out: list[dict[str, Any]] = []
    me = socket.gethostname()
    for p in d.glob("export-*.json"):
        try:
            data = json.loads(p.read_text())
            mtime = p.stat().st_mtime
        except (OSError, ValueError):
            continue
        if not isinstance(data, dict):
            continue
        local = data.get("host") == me
        alive = pid_alive(int(data.get("pid") or 0)) if local else None
        if alive is False and time.time() - mtime > _KEEP_DEAD_S:
            try:
                p.unlink()
            except OSError:
                pass
            continue
        data["alive"] = alive
        out.append(data)
    out.sort(key=lambda r: str(r.get("updated_at") or ""), reverse=True)
    return out
