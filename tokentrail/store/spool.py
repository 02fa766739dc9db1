"""The spool: batches of encoded rows waiting to reach the store, one file per batch.

Writers (any number of application processes) write to a temporary name and rename, so a
reader never sees half a file. The batch id in the name is the insert deduplication token:
a batch ingested twice (crash after insert, before delete) is stored once.

A file the store refuses (torn by a crash or a full disk, copied in from elsewhere) is set
aside once into `rejected/`, with the store's error in `<name>.error.txt` beside it, so that no
reader fails on it again. The spool has a size cap: a batch that would pass it is refused
(`SpoolFull`) and the writer counts it as lost; nothing already spooled is ever deleted.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".jsonl"
REJECTED = "rejected"
ERROR_SUFFIX = ".error.txt"
# the tables a spool file may feed: a file naming any other is set aside, never inserted
TABLES = ("spans", "budget_events", "lost_spans")
# how long a size measured by scanning the directory is trusted (plus this process's own writes)
_SIZE_TTL_S = 1.0


class SpoolFull(OSError):
    """The spool holds `max_bytes` already: the batch was not written."""


@dataclass(frozen=True)
class SpoolFile:
    path: Path
    table: str
    batch_id: str

    def read(self) -> bytes:
        return self.path.read_bytes()

    def remove(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


@dataclass(frozen=True)
class Depth:
    """What waits in the spool (or lies set aside): files, bytes, the oldest file's write time."""

    files: int = 0
    bytes: int = 0
    oldest_ns: int | None = None


def new_batch_id() -> str:
    return uuid.uuid4().hex


# spool dir -> (bytes, measured at monotonic s): the cap is checked without a scan per batch
_sizes: dict[Path, tuple[int, float]] = {}
_sizes_lock = threading.Lock()


def _size(spool_dir: Path) -> int:
    now = time.monotonic()
    with _sizes_lock:
        cached = _sizes.get(spool_dir)
        if cached is not None and now - cached[1] < _SIZE_TTL_S:
            return cached[0]
    size = depth(spool_dir).bytes
    with _sizes_lock:
        _sizes[spool_dir] = (size, now)
    return size


def _grew(spool_dir: Path, n: int) -> None:
    with _sizes_lock:
        cached = _sizes.get(spool_dir)
        if cached is not None:
            _sizes[spool_dir] = (cached[0] + n, cached[1])


def write(spool_dir: Path, table: str, batch_id: str, payload: bytes, *, max_bytes: int | None = None) -> Path:
    """Atomically add one batch (JSONEachRow bytes) to the spool. With `max_bytes`, raise
    SpoolFull instead when the spool would grow past it (the size is re-measured at most once a
    second, so several writing processes can pass the cap by about a second of their writes)."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    if max_bytes is not None and _size(spool_dir) + len(payload) > max_bytes:
        raise SpoolFull(f"the spool {spool_dir} holds its cap of {max_bytes:,} bytes")
    # time first, so files sort in write order
    name = f"{time.time_ns():020d}.{table}.{batch_id}{SUFFIX}"
    final = spool_dir / name
    tmp = spool_dir / f".{name}.{os.getpid()}.tmp"
    try:
        with tmp.open("wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:  # remove the partial file, then re-raise
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    _grew(spool_dir, len(payload))
    return final


def _parse(p: Path) -> SpoolFile | None:
    parts = p.name[: -len(SUFFIX)].split(".")
    if len(parts) != 3:
        return None
    return SpoolFile(p, parts[1], parts[2])


def pending(spool_dir: Path) -> Iterator[SpoolFile]:
    """Spool files in write order. A `*.jsonl` whose name is not `<time>.<table>.<batch>.jsonl`
    is yielded too, with table "": it is foreign, and the reader sets it aside."""
    if not spool_dir.is_dir():
        return
    for p in sorted(spool_dir.glob(f"*{SUFFIX}")):
        yield _parse(p) or SpoolFile(p, "", "")


def count(spool_dir: Path) -> int:
    return sum(1 for _ in pending(spool_dir))


def _scan(directory: Path, suffix: str) -> Depth:
    files = size = 0
    oldest: int | None = None
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return Depth()
    for e in entries:
        if not e.name.endswith(suffix) or e.name.startswith("."):
            continue
        try:
            st = e.stat()
        except FileNotFoundError:  # ingested meanwhile
            continue
        files += 1
        size += st.st_size
        oldest = st.st_mtime_ns if oldest is None else min(oldest, st.st_mtime_ns)
    return Depth(files, size, oldest)


def depth(spool_dir: Path) -> Depth:
    """The files waiting in the spool (set-aside ones not included)."""
    return _scan(spool_dir, SUFFIX)


def rejected_dir(spool_dir: Path) -> Path:
    return spool_dir / REJECTED


def set_aside(f: SpoolFile, error: str) -> Path:
    """Move a refused file to rejected/ with the error beside it (`<name>.error.txt`); the
    error file is written first, so a set-aside file always says why."""
    target_dir = rejected_dir(f.path.parent)
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f.path.name
    note = target_dir / (f.path.name + ERROR_SUFFIX)
    tmp = note.with_name("." + note.name + ".tmp")
    tmp.write_text(error.rstrip() + "\n")
    os.replace(tmp, note)
    os.replace(f.path, target)
    _grew(f.path.parent, -target.stat().st_size)
    return target


@dataclass(frozen=True)
class RejectedFile:
    path: Path
    error: str
    bytes: int


def rejected(spool_dir: Path) -> list[RejectedFile]:
    """The files set aside, oldest first, each with the error that refused it."""
    d = rejected_dir(spool_dir)
    if not d.is_dir():
        return []
    out: list[RejectedFile] = []
    for p in sorted(d.glob(f"*{SUFFIX}")):
        note = d / (p.name + ERROR_SUFFIX)
        try:
            error = note.read_text().strip()
        except FileNotFoundError:
            error = "(no error recorded)"
        try:
            size = p.stat().st_size
        except FileNotFoundError:
            continue
        out.append(RejectedFile(p, error, size))
    return out


def requeue_rejected(spool_dir: Path) -> int:
    """Move every set-aside file back into the spool (after a fix), its error note removed;
    returns how many."""
    n = 0
    for r in rejected(spool_dir):
        os.replace(r.path, spool_dir / r.path.name)
        try:
            (r.path.parent / (r.path.name + ERROR_SUFFIX)).unlink()
        except FileNotFoundError:
            pass
        n += 1
    with _sizes_lock:
        _sizes.pop(spool_dir, None)
    return n
