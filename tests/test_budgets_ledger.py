"""The shared ledger: 4 real processes x 4 threads on one hard budget let exactly the
affordable calls through, on the machine's file ledger and on a real redis-server; a process
killed mid-call gives its reservation back (file: at once, its pid is gone; Redis: when the
reservation expires, on the injected clock)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from redisserver import redis_server

import tokentrail
from tokentrail import Budget, BudgetExceeded, testing
from tokentrail.context import Attribution

NS = 1_000_000_000
T = 1_773_835_200 * NS  # 2026-03-18 12:00 UTC, every process's injected clock
PRICES = {"m-out": {"input_per_mtok": 0, "output_per_mtok": 3000}}  # 100 output tokens: $0.30
SHOP = Attribution(project="shop")

WORKER = textwrap.dedent(
    """
    import os, sys, threading, time
    from decimal import Decimal
    from pathlib import Path
    import tokentrail
    from tokentrail import Budget, BudgetExceeded
    from tokentrail.context import Attribution

    home, backend, go, limit = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
    rt = tokentrail.configure(
        home=home, project="shop", budget_backend=backend,
        prices={"m-out": {"input_per_mtok": 0, "output_per_mtok": 3000}},
        budgets=[Budget(name="hard", limit_usd=limit, period="month")],
    )
    rt.clock = lambda: {T}
    m = rt.budgets
    m.wait_ready(10)
    counts = [0] * 4

    first = go.parent / f"first-{os.getpid()}"

    def work(i):
        while True:
            try:
                r = m.reserve(Attribution(project="shop"), model="m-out", provider=None, prompt_tokens=0, max_output_tokens=100)
            except BudgetExceeded:
                return
            if counts[i] == 0:
                # every process holds a reservation before any settles: all four take part
                # however the scheduler runs them (16 first calls fit the budget)
                first.touch()
                deadline = time.monotonic() + 20
                while len(list(go.parent.glob("first-*"))) < 4 and time.monotonic() < deadline:
                    time.sleep(0.002)
            time.sleep(0.001)  # the model call: other processes reserve meanwhile
            m.settle(r, Decimal("0.3"))
            counts[i] += 1

    (go.parent / f"ready-{os.getpid()}").touch()
    while not go.exists():
        time.sleep(0.005)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    print(sum(counts), m.spent("hard"), m.reserved_usd("hard"))
    tokentrail.shutdown()
    """.replace("{T}", str(T))
)


def _run_workers(tmp_path: Path, home: Path, backend: str, limit: str) -> list[tuple[int, Decimal, Decimal]]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    go = tmp_path / "go"
    env = {**os.environ, "TOKENTRAIL_BUDGET_REFRESH_SECONDS": "3600"}
    procs = [
        subprocess.Popen([sys.executable, str(script), str(home), backend, str(go), limit], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(4)
    ]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)  # all four import and configure; then they start together
    go.touch()
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr[-2000:]
        n, spent, reserved = stdout.split()
        out.append((int(n), Decimal(spent), Decimal(reserved)))
    return out


def _check_exact(results: list[tuple[int, Decimal, Decimal]], limit: str) -> None:
    affordable = int(Decimal(limit) / Decimal("0.3"))
    calls = sum(n for n, _, _ in results)
    print(f"calls through per process {[n for n, _, _ in results]}: {calls} of {affordable} affordable")
    assert calls == affordable
    # every process took part (each holds a reservation before any settles)
    assert all(n > 0 for n, _, _ in results)
    # each process reads the shared figure: the last to finish sees the whole spend
    assert max(spent for _, spent, _ in results) == Decimal("0.3") * affordable
    assert Decimal("0.3") * calls <= Decimal(limit)  # dollars over the limit: 0



def _ledger_after(home: Path, backend: str) -> tuple[Decimal, Decimal]:
    """What a new process reads from the ledger once the workers are done."""
    rt = tokentrail.configure(home=home, project="shop", budget_backend=backend, prices=PRICES, budgets=[Budget(name="hard", limit_usd="60.1")])
    rt.clock = lambda: T
    try:
        return rt.budgets.spent("hard"), rt.budgets.reserved_usd("hard")
    finally:
        rt.shutdown()
        testing.reset()


def test_four_processes_four_threads_file_ledger(tt_home: Path, tmp_path: Path) -> None:
    results = _run_workers(tmp_path, tt_home, "file", "60.1")
    _check_exact(results, "60.1")
    assert (tt_home / "budgets.ledger").is_file()
    assert _ledger_after(tt_home, "file") == (Decimal("60"), 0)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


def _flushdb(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def test_four_processes_four_threads_redis(tt_home: Path, tmp_path: Path, redis_url: str) -> None:
    _flushdb(redis_url)
    results = _run_workers(tmp_path, tt_home, redis_url, "60.1")
    _check_exact(results, "60.1")
    assert _ledger_after(tt_home, redis_url) == (Decimal("60"), 0)


HOLDER = textwrap.dedent(
    """
    import sys, time
    import tokentrail
    from tokentrail import Budget
    from tokentrail.context import Attribution

    rt = tokentrail.configure(
        home=sys.argv[1], project="shop", budget_backend=sys.argv[2], budget_reservation_seconds=60,
        prices={"m-out": {"input_per_mtok": 0, "output_per_mtok": 3000}},
        budgets=[Budget(name="hard", limit_usd="0.3", period="month")],
    )
    rt.clock = lambda: {T}
    m = rt.budgets
    m.wait_ready(10)
    r = m.reserve(Attribution(project="shop"), model="m-out", provider=None, prompt_tokens=0, max_output_tokens=100)
    print("reserved", flush=True)
    time.sleep(600)  # the model call that never returns: SIGKILLed here
    """.replace("{T}", str(T))
)


class _Clock:
    def __init__(self) -> None:
        self.now = T

    def __call__(self) -> int:
        return self.now


def _killed_holder(tmp_path: Path, home: Path, backend: str) -> None:
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    env = {**os.environ, "TOKENTRAIL_BUDGET_REFRESH_SECONDS": "3600"}
    p = subprocess.Popen([sys.executable, str(script), str(home), backend], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line.strip() == "reserved", p.stderr.read() if p.stderr else ""
    return_holder = p
    _killed_holder.proc = return_holder  # type: ignore[attr-defined]


def _me(home: Path, backend: str, clock: _Clock) -> Any:
    rt = tokentrail.configure(
        home=home,
        project="shop",
        budget_backend=backend,
        budget_reservation_seconds=60,
        prices=PRICES,
        budgets=[Budget(name="hard", limit_usd="0.3", period="month")],
    )
    rt.clock = clock
    assert rt.budgets is not None
    rt.budgets.wait_ready(10)
    return rt


def _try(rt: Any) -> bool:
    try:
        r = rt.budgets.reserve(SHOP, model="m-out", provider=None, prompt_tokens=0, max_output_tokens=100)
    except BudgetExceeded:
        return False
    rt.budgets.release(r)
    return True


def test_sigkilled_process_releases_its_reservation_file_ledger(tt_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENTRAIL_BUDGET_REFRESH_SECONDS", "3600")
    _killed_holder(tmp_path, tt_home, "file")
    proc = _killed_holder.proc  # type: ignore[attr-defined]
    clock = _Clock()
    rt = _me(tt_home, "file", clock)
    try:
        assert not _try(rt)  # the holder's $0.30 is reserved: nothing left
        assert rt.budgets.reserved_usd("hard") == Decimal("0.3")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        rt.budgets.ledger._last_dead_check = 0.0  # (dead processes are looked for at most twice a second)
        assert _try(rt)  # on one machine a dead process's reservation goes at once, not at expiry
        assert rt.budgets.reserved_usd("hard") == 0
    finally:
        rt.shutdown()
        testing.reset()


def test_sigkilled_process_releases_its_reservation_redis_at_expiry(tt_home: Path, tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENTRAIL_BUDGET_REFRESH_SECONDS", "3600")
    _flushdb(redis_url)
    _killed_holder(tmp_path, tt_home, redis_url)
    proc = _killed_holder.proc  # type: ignore[attr-defined]
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    clock = _Clock()
    rt = _me(tt_home, redis_url, clock)
    try:
        assert not _try(rt)  # another host's process may be alive: its reservation holds...
        clock.now = T + 60 * NS - 1
        assert not _try(rt)  # ...until its expiry (60 s on the callers' clock)
        clock.now = T + 60 * NS
        assert _try(rt)
        assert rt.budgets.reserved_usd("hard") == 0
        r = rt.budgets.reserve(SHOP, model="m-out", provider=None, prompt_tokens=0, max_output_tokens=100)
        rt.budgets.settle(r, Decimal("0.3"))
        assert rt.budgets.spent("hard") == Decimal("0.3")
        assert not _try(rt)
    finally:
        rt.shutdown()
        testing.reset()


FORECAST_WORKER = textwrap.dedent(
    """
    import os, sys, threading, time
    from decimal import Decimal
    from pathlib import Path
    import tokentrail
    from tokentrail import Budget, BudgetExceeded
    from tokentrail.budgets import add_alert_handler
    from tokentrail.context import Attribution

    home, backend, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    rt = tokentrail.configure(
        home=home, project="shop", budget_backend=backend,
        prices={"m-out": {"input_per_mtok": 0, "output_per_mtok": 3000}},
        budgets=[Budget(name="monthly", limit_usd=10, period="month", warn_at=())],
    )
    rt.clock = lambda: {T}
    m = rt.budgets
    m.wait_ready(10)
    forecasts = []
    add_alert_handler(lambda e: forecasts.append(e) if e.event == "forecast" else None)

    def work():
        while True:
            try:
                r = m.reserve(Attribution(project="shop"), model="m-out", provider=None, prompt_tokens=0, max_output_tokens=100)
            except BudgetExceeded:
                return
            time.sleep(0.001)
            m.settle(r, Decimal("0.3"))

    (go.parent / f"ready-{os.getpid()}").touch()
    while not go.exists():
        time.sleep(0.005)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    m.flush()
    print(len(forecasts))
    tokentrail.shutdown()
    """.replace("{T}", str(T))
)


@pytest.mark.parametrize("backend", ["file", "redis"])
def test_forecast_alerts_once_per_period_across_processes(tt_home: Path, tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    # mid-March at $0.30 a call: the trailing rate reaches the $10 limit before the month ends
    # once $5.65 is spent; every process sees the shared spend cross it, one alerts
    url = backend
    if backend == "redis":
        url = request.getfixturevalue("redis_url")
        _flushdb(url)
    script = tmp_path / "forecast.py"
    script.write_text(FORECAST_WORKER)
    go = tmp_path / "go"
    env = {**os.environ, "TOKENTRAIL_BUDGET_REFRESH_SECONDS": "3600"}
    procs = [
        subprocess.Popen([sys.executable, str(script), str(tt_home), url, str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(4)
    ]
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("ready-*"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    counts = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        counts.append(int(out.split()[-1]))
    assert sum(counts) == 1, counts
