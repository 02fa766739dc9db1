"""A real ClickHouse HTTP server on loopback: the clickhouse-local that chdb carries, listening
(the recipe in FIELD-NOTES). Same engine, deduplication and errors as a server.

    with ClickHouseServer(tmp_path / "data") as server:
        server.url            # http://default:@127.0.0.1:PORT
        server.kill()         # SIGKILL: a crash
        server.start()        # again, on the same data: nothing lost

Also a loopback socket that accepts connections and never answers (a hung server).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import TracebackType

_CHILD = textwrap.dedent(
    """
    import os, sys, threading, time
    parent = os.getppid()
    def orphaned():  # the test run died: the server must not outlive it
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)
    threading.Thread(target=orphaned, daemon=True).start()
    os.chdir(sys.argv[1])
    import chdb._chdb as c
    c.query(
        "SYSTEM START LISTEN HTTP; SELECT sleepEachRow(1) FROM numbers(1000000000) "
        "SETTINGS max_block_size=1 FORMAT Null",
        "TabSeparated",
        path=sys.argv[2],
    )
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ClickHouseServer:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.conf_dir = data_dir.with_name(data_dir.name + "-conf")
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://default:@127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        (self.conf_dir / "config.xml").write_text(
            f"<clickhouse><listen_host>127.0.0.1</listen_host><http_port>{self.port}</http_port>"
            "<tcp_port>0</tcp_port></clickhouse>"
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(self.conf_dir), str(self.data_dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the ClickHouse server exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.kill()
        raise RuntimeError("the ClickHouse server did not listen in time")

    def kill(self) -> None:
        """SIGKILL: the server crashes (its data stays on disk)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def __enter__(self) -> ClickHouseServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


class HungServer:
    """Accepts TCP connections on loopback and never answers: every request waits forever."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = int(self.sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://default:@127.0.0.1:{self.port}"

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> HungServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
