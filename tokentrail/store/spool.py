"""The spool: batches of encoded rows waiting to reach the store, one file per batch.

Writers (any number of application processes) write to a temporary name and rename, so a
reader never sees half a file. The batch id in the name is the insert deduplication token:
a batch ingested twice (crash after insert, before delete) is stored once.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".jsonl"


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


def new_batch_id() -> str:
    return uuid.uuid4().hex


def write(spool_dir: Path, table: str, batch_id: str, payload: bytes) -> Path:
    """Atomically add one batch (JSONEachRow bytes) to the spool."""
    spool_dir.mkdir(parents=True, exist_ok=True)
    # time first, so files sort in write order
    name = f"{time.time_ns():020d}.{table}.{batch_id}{SUFFIX}"
    final = spool_dir / name
    tmp = spool_dir / f".{name}.{os.getpid()}.tmp"
    with tmp.open("wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    return final


def pending(spool_dir: Path) -> Iterator[SpoolFile]:
    if not spool_dir.is_dir():
        return
    for p in sorted(spool_dir.glob(f"*{SUFFIX}")):
        parts = p.name[: -len(SUFFIX)].split(".")
        if len(parts) != 3:
            continue
        yield SpoolFile(p, parts[1], parts[2])


def count(spool_dir: Path) -> int:
    return sum(1 for _ in pending(spool_dir))
