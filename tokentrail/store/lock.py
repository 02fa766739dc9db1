"""The embedded store's lock: one process at a time may open a chdb directory."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# chdb keeps process-wide state: threads of one process take turns too.
_thread_lock = threading.RLock()


class LockTimeout(TimeoutError):
    pass


@contextmanager
def exclusive(path: Path, timeout: float = 60.0) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    if not _thread_lock.acquire(timeout=timeout):
        raise LockTimeout(f"tokentrail: store lock {path}: busy for {timeout:.0f}s; close the other reader")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise LockTimeout(
                            f"tokentrail: store lock {path}: another process holds it; wait or close it"
                        ) from None
                    time.sleep(0.02)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    finally:
        _thread_lock.release()
