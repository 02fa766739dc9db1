"""A real ClickHouse server on loopback, for tests and benchmarks.

The chdb package carries upstream clickhouse-local, which can listen: a child process runs
`SYSTEM START LISTEN HTTP` and then a query that sleeps while the server serves (FIELD-NOTES).
Same engine, deduplication, access control and errors as clickhouse-server; no Keeper, so no
replication and no ON CLUSTER.

    server = ClickHouseServer(tmp_path / "ch").start()   # or: with ClickHouseServer(...) as server
    server.url                              # http://default:@127.0.0.1:PORT
    server.url_for("llm_costs")             # http://default:@127.0.0.1:PORT/llm_costs
    server.kill(); server.start()           # a crash, and the same data after the restart
    server.stop()                           # clean: the serving query is killed, the child exits

The data is in the given directory, the config beside it (`<dir>-conf`).

Users (users.xml): `default` (no password, may do everything), `writer` / `writer-pw` (SELECT
and INSERT only: may not create a database or a table), `viewer` / `viewer-pw` (SELECT only).
The child dies with its parent (it watches the parent's pid), so no server outlives a test run.
Also a loopback socket that accepts connections and never answers (HungServer), and HTTPS in
front of a server (TlsProxy).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path
from types import TracebackType

CHILD = textwrap.dedent(
    """
    import os, sys, threading, time
    parent = os.getppid()
    def orphaned():  # the test run died: do not outlive it
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)
    threading.Thread(target=orphaned, daemon=True).start()
    os.chdir(sys.argv[1])
    import chdb._chdb as c
    c.query(sys.argv[3] + "SELECT sleepEachRow(1) FROM numbers(1000000000) SETTINGS max_block_size=1 FORMAT Null",
            "TabSeparated", path=sys.argv[2])
    """
)

USERS_XML = """<clickhouse>
  <profiles><default/></profiles>
  <quotas><default/></quotas>
  <users>
    <default><password></password><networks><ip>::/0</ip></networks><profile>default</profile>
      <quota>default</quota><access_management>1</access_management></default>
    <writer><password>writer-pw</password><networks><ip>::/0</ip></networks><profile>default</profile>
      <quota>default</quota><grants><query>GRANT SELECT, INSERT ON *.*</query></grants></writer>
    <viewer><password>viewer-pw</password><networks><ip>::/0</ip></networks><profile>default</profile>
      <quota>default</quota><grants><query>GRANT SELECT ON *.*</query></grants></viewer>
  </users>
</clickhouse>
"""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


class ClickHouseServer:
    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        http_port: int | None = None,
        tcp_port: int | None = None,
        remote_servers: str = "",
    ) -> None:
        self.data_dir = Path(data_dir)
        self.root = self.data_dir.with_name(self.data_dir.name + "-conf")  # config.xml, users.xml, the log
        self.host = host
        self.http_port = http_port or free_port(host)
        self.tcp_port = tcp_port  # only a cluster node needs the native protocol
        self.remote_servers = remote_servers
        self.proc: subprocess.Popen[bytes] | None = None

    # -- where ---------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.http_port

    @property
    def url(self) -> str:
        return self.url_for()

    def url_for(self, database: str | None = None, *, user: str = "default", password: str = "") -> str:
        path = f"/{database}" if database else ""
        return f"http://{user}:{password}@{self.host}:{self.http_port}{path}"

    def client(self, **kw: object) -> object:
        import clickhouse_connect

        return clickhouse_connect.get_client(host=self.host, port=self.http_port, **kw)

    # -- life ----------------------------------------------------------------------------------
    def _write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tcp = self.tcp_port or 0
        (self.root / "config.xml").write_text(
            f"<clickhouse><listen_host>{self.host}</listen_host><http_port>{self.http_port}</http_port>"
            f"<tcp_port>{tcp}</tcp_port><keep_alive_timeout>3</keep_alive_timeout>"
            "<user_directories><users_xml><path>users.xml</path></users_xml></user_directories>"
            f"{self.remote_servers}</clickhouse>"
        )
        (self.root / "users.xml").write_text(USERS_XML)

    def start(self, timeout: float = 60.0) -> ClickHouseServer:
        self._write_config()
        listen = "SYSTEM START LISTEN HTTP; " + ("SYSTEM START LISTEN TCP; " if self.tcp_port else "")
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 (the child owns it)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(self.root), str(self.data_dir), listen],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ClickHouse server exited ({self.proc.returncode}); see {self.root / 'server.log'}")
            try:
                with urllib.request.urlopen(f"http://{self.host}:{self.http_port}/ping", timeout=1) as r:
                    if r.read().strip() == b"Ok.":
                        return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"ClickHouse server did not start in {timeout:.0f}s; see {self.root / 'server.log'}")

    def kill(self) -> None:
        """A crash: SIGKILL, no shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        """A clean stop: kill the query that keeps the server alive; SIGKILL if it will not go."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        try:
            q = "KILL QUERY WHERE query LIKE '%sleepEachRow%' AND query NOT LIKE '%KILL QUERY%'"
            req = urllib.request.Request(f"http://{self.host}:{self.http_port}/", data=q.encode())
            urllib.request.urlopen(req, timeout=5).read()
            self.proc.wait(15)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> ClickHouseServer:
        return self.start()

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


def cluster_of_two(root: Path, name: str = "tt") -> list[ClickHouseServer]:
    """Two servers as two shards of cluster `name`: 127.0.0.1 and 127.0.0.2, the same HTTP port
    (as on real nodes, so a client reaches each node at the URL's port), each its own TCP port
    (a node tells itself from the others by address and TCP port)."""
    for _ in range(50):
        http = free_port()
        t1, t2 = free_port(), free_port()
        if port_free("127.0.0.2", http) and port_free("127.0.0.2", t2) and len({http, t1, t2}) == 3:
            break
    else:  # pragma: no cover
        raise RuntimeError("no free ports on 127.0.0.2")
    shards = "".join(
        f"<shard><replica><host>{h}</host><port>{t}</port></replica></shard>" for h, t in (("127.0.0.1", t1), ("127.0.0.2", t2))
    )
    remote = f"<remote_servers><{name}>{shards}</{name}></remote_servers>"
    return [
        ClickHouseServer(root / f"node{i}", host=h, http_port=http, tcp_port=t, remote_servers=remote)
        for i, (h, t) in enumerate((("127.0.0.1", t1), ("127.0.0.2", t2)), start=1)
    ]


DATA = Path(__file__).with_name("data")


class TlsProxy:
    """HTTPS in front of a server (clickhouse-local listens on HTTP only): TLS on a port of its
    own, bytes passed through to the HTTP port. The certificate (tests/data, for 127.0.0.1) is
    self-signed: clients trust it with ca_cert=tests/data/tls-cert.pem."""

    cert = DATA / "tls-cert.pem"

    def __init__(self, backend_port: int) -> None:
        import ssl
        import threading

        self.backend = backend_port
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(DATA / "tls-cert.pem", DATA / "tls-key.pem")
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.port = int(self.sock.getsockname()[1])
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        import threading

        try:
            tls = self.ctx.wrap_socket(conn, server_side=True)
            back = socket.create_connection(("127.0.0.1", self.backend))
        except OSError:
            conn.close()
            return

        def pipe(a: socket.socket, b: socket.socket) -> None:
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.close()
                    except OSError:
                        pass

        threading.Thread(target=pipe, args=(back, tls), daemon=True).start()
        pipe(tls, back)

    def close(self) -> None:
        self._closed = True
        self.sock.close()
