"""BudgetManager on a real embedded store with an injected clock: reserve / settle / release,
scopes, thresholds, periods, events, webhooks, threads.

`call()` does what an integration does around one model call (see instrumentation/common.py):
reserve before the model runs, a span with the usage and cost, settle after.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from opentelemetry.trace import SpanKind

import tokentrail
from tokentrail import Budget, BudgetExceeded, runtime
from tokentrail.budgets import add_alert_handler
from tokentrail.budgets.alerts import BudgetEvent
from tokentrail.budgets.manager import BudgetManager
from tokentrail.context import Attribution
from tokentrail.instrumentation import common
from tokentrail.store import open_store
from tokentrail.usage import Usage

NS = 1_000_000_000
# $3000 per million output tokens: 100 output tokens cost exactly $0.30; input is free
PRICES = {
    "m-out": {"input_per_mtok": 0, "output_per_mtok": 3000},
    "m-in": {"input_per_mtok": 1000, "output_per_mtok": 2000},
}
SHOP = Attribution(project="shop")
T0 = int(datetime(2026, 3, 18, 12, 0, tzinfo=timezone.utc).timestamp()) * NS


class Clock:
    def __init__(self, start: int = T0) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def set(self, iso: str, tz: str = "UTC") -> None:
        d = datetime.fromisoformat(iso).replace(tzinfo=ZoneInfo(tz))
        self.now = int(d.timestamp()) * NS

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * NS)


@pytest.fixture
def make(tt_home: Path, monkeypatch: pytest.MonkeyPatch, runtimes: list[runtime.Tokentrail]) -> Iterator[Callable[..., runtime.Tokentrail]]:
    """configure() with budgets and an injected clock; the background refresh only runs at start
    (tests call manager.refresh() themselves)."""
    monkeypatch.setenv("TOKENTRAIL_BUDGET_REFRESH_SECONDS", "3600")
    made = runtimes

    def _make(*budgets: Budget, clock: Clock | None = None, **kw: Any) -> runtime.Tokentrail:
        rt = tokentrail.configure(home=tt_home, project="shop", budgets=list(budgets), prices=PRICES, **kw)
        rt.clock = clock or Clock()
        made.append(rt)
        assert rt.budgets is not None
        rt.budgets.wait_ready(10)
        return rt

    yield _make


def call(
    rt: runtime.Tokentrail,
    attr: Attribution = SHOP,
    *,
    model: str = "m-out",
    prompt: int = 0,
    max_out: int | None = 100,
    out: int = 100,
    on_model: Callable[[], None] | None = None,
) -> Decimal | None:
    """One model call as the integrations make it (reserve, provider, settle, end the span);
    returns its cost. Raises BudgetExceeded before `on_model` (the provider) runs when a
    budget refuses it."""
    span = rt.tracer.start_span(
        f"chat {model}",
        kind=SpanKind.CLIENT,
        start_time=rt.now_ns(),
        attributes=common.start_attributes(operation="chat", framework="test", attribution=attr, request_model=model),
    )
    try:
        res = common.budget_reserve(rt, attr, model=model, provider=None, prompt_tokens=prompt, max_output_tokens=max_out)
    except BudgetExceeded as e:
        common.record_error(span, e)
        span.end(end_time=rt.now_ns())
        raise
    if on_model:
        on_model()
    when = datetime.fromtimestamp(rt.now_ns() / NS, tz=timezone.utc)
    cost = common.record_usage(span, rt.prices, Usage(input_tokens=prompt, output_tokens=out), model=model, provider=None, when=when)
    common.budget_settle(rt, res, cost)
    span.end(end_time=rt.now_ns())
    return cost.total_usd


def mgr(rt: runtime.Tokentrail) -> BudgetManager:
    m = rt.budgets
    assert isinstance(m, BudgetManager)
    return m


def store_events(rt: runtime.Tokentrail) -> list[dict[str, Any]]:
    rt.flush()
    with open_store(rt.settings) as store:
        res = store.query("SELECT * FROM tokentrail.budget_events ORDER BY timestamp, event, threshold")
        return [dict(zip(res.column_names, r, strict=True)) for r in res.result_rows]


def test_hard_budget_lets_the_affordable_calls_through_and_blocks_before_the_model(make: Any) -> None:
    rt = make(Budget(name="hard", limit_usd="1.00", period="month"))
    m = mgr(rt)
    model_calls = 0

    def model() -> None:
        nonlocal model_calls
        model_calls += 1

    assert [call(rt, on_model=model) for _ in range(3)] == [Decimal("0.3")] * 3
    with pytest.raises(BudgetExceeded) as e:
        call(rt, on_model=model)
    assert model_calls == 3  # the 4th call never reached the model
    err = e.value
    assert (err.budget, err.scope_value, err.spent_usd, err.limit_usd, err.estimated_cost_usd) == (
        "hard", None, Decimal("0.9"), Decimal("1.00"), Decimal("0.3")
    )
    assert "budget 'hard' exceeded: spent $0.90 of $1.00, this call up to $0.30" in str(err)
    assert m.spent("hard") == Decimal("0.9") and m.reserved_usd("hard") == 0
    # a call that fits what is left still goes through ($0.099: 33 tokens)
    assert call(rt, max_out=33, out=33, on_model=model) == Decimal("0.099")
    # the store now holds the spend: refreshing must not count it twice
    rt.flush()
    assert m.refresh()
    assert m.spent("hard") == Decimal("0.999")
    with pytest.raises(BudgetExceeded):
        call(rt, max_out=1, out=1)  # $0.003 > $0.001 left
    # a new manager (a restarted process) starts from the store's figure
    rt2 = make(Budget(name="hard", limit_usd="1.00", period="month"))
    assert mgr(rt2).spent("hard") == Decimal("0.999")
    with pytest.raises(BudgetExceeded):
        call(rt2, max_out=1, out=1)


def test_worst_case_is_prompt_plus_max_output(make: Any) -> None:
    # m-in: $1000/M in, $2000/M out
    rt = make(Budget(name="a", limit_usd=1000), Budget(name="capped", limit_usd=1000, max_output_tokens=512))
    m = mgr(rt)
    a = Attribution(project="shop")
    r = m.reserve(a, model="m-in", provider=None, prompt_tokens=1000, max_output_tokens=10)
    assert r is not None and r.worst_usd == Decimal("1.02")  # 1000 in + 10 out given by the call
    assert m.reserved_usd("a") == m.reserved_usd("capped") == Decimal("1.02")
    m.release(r)
    assert m.reserved_usd("a") == 0
    r = m.reserve(a, model="m-in", provider=None, prompt_tokens=1000, max_output_tokens=None)
    assert m.reserved_usd("a") == Decimal("1") + 4096 * Decimal("0.002")  # the default cap, 4096
    assert m.reserved_usd("capped") == Decimal("1") + 512 * Decimal("0.002")  # the budget's cap
    m.settle(r, Decimal("1.5"))
    assert m.spent("a") == m.spent("capped") == Decimal("1.5") and m.reserved_usd("a") == 0
    m.settle(r, Decimal("1.5"))  # a second settle is ignored
    assert m.spent("a") == Decimal("1.5")


def test_every_matching_budget_must_fit(make: Any) -> None:
    rt = make(
        Budget(name="project", limit_usd=10, scope={"project": "shop"}),
        Budget(name="team", limit_usd="1.2", scope={"team": "search"}),
        Budget(name="user", limit_usd="0.6", scope={"team": "search", "user_id": "*"}),
    )
    m = mgr(rt)
    alice = Attribution(project="shop", team="search", user_id="alice")
    bob = Attribution(project="shop", team="search", user_id="bob")
    other = Attribution(project="shop", team="ads", user_id="alice")
    call(rt, alice)
    call(rt, alice)
    with pytest.raises(BudgetExceeded) as e:
        call(rt, alice)
    assert (e.value.budget, e.value.scope_value) == ("user", "alice")
    call(rt, bob)  # bob has his own $0.60
    call(rt, bob)
    with pytest.raises(BudgetExceeded) as e:
        call(rt, Attribution(project="shop", team="search", user_id="carol"))
    assert e.value.budget == "team"  # carol is fresh, but the team's $1.20 is gone
    call(rt, other)  # another team: only the project budget applies
    assert m.spent("project") == Decimal("1.5")
    assert m.spent("team") == Decimal("1.2")
    assert (m.spent("user", "alice"), m.spent("user", "bob"), m.spent("user", "carol")) == (
        Decimal("0.6"), Decimal("0.6"), Decimal(0)
    )
    # refused calls reserved nothing anywhere
    assert m.reserved_usd("project") == m.reserved_usd("team") == 0
    rt.flush()
    assert m.refresh()
    assert (m.spent("project"), m.spent("team"), m.spent("user", "bob")) == (Decimal("1.5"), Decimal("1.2"), Decimal("0.6"))


def test_warn_action_and_unpriced_models(make: Any) -> None:
    rt = make(
        Budget(name="soft", limit_usd="0.5", action="warn", warn_at=()),
        Budget(name="strict", limit_usd=100, scope={"feature": "strict"}, unpriced="block"),
    )
    m = mgr(rt)
    for _ in range(3):
        call(rt)  # $0.90 against a $0.50 warn-only budget: never blocked
    assert m.spent("soft") == Decimal("0.9")
    call(rt, model="mystery-model")  # no price: let through, counted as nothing
    call(rt, model="mystery-model")
    assert m.spent("soft") == Decimal("0.9")
    with pytest.raises(BudgetExceeded) as e:
        call(rt, Attribution(project="shop", feature="strict"), model="mystery-model")
    assert (e.value.reason, e.value.model, e.value.estimated_cost_usd) == ("unpriced", "mystery-model", None)
    assert "has no price" in str(e.value)
    events = store_events(rt)
    kinds = [(ev["budget"], ev["event"], ev["threshold"], ev["model"]) for ev in events]
    assert ("soft", "warn", 1.0, "") in kinds  # the limit itself alerts
    assert kinds.count(("soft", "unpriced", None, "mystery-model")) == 1  # once per model and period
    assert ("strict", "unpriced", None, "mystery-model") in kinds
    assert not any(ev["event"] == "block" for ev in events)


def test_per_user_budget_keeps_users_apart(make: Any) -> None:
    rt = make(Budget(name="per-user", limit_usd="0.6", period="day", scope={"user_id": "*"}))
    m = mgr(rt)
    for user in ("alice", "bob"):
        call(rt, Attribution(project="shop", user_id=user))
        call(rt, Attribution(project="shop", user_id=user))
    with pytest.raises(BudgetExceeded) as e:
        call(rt, Attribution(project="shop", user_id="alice"))
    assert e.value.scope_value == "alice"
    call(rt, Attribution(project="shop", user_id="carol"))
    # no user: outside a per-user budget
    for _ in range(5):
        call(rt, Attribution(project="shop"))
    rt.flush()
    assert m.refresh()
    assert [m.spent("per-user", u) for u in ("alice", "bob", "carol", "dave")] == [
        Decimal("0.6"), Decimal("0.6"), Decimal("0.3"), Decimal(0)
    ]
    with pytest.raises(BudgetExceeded):
        call(rt, Attribution(project="shop", user_id="bob"))


def _no_forecast(into: list[BudgetEvent]) -> Callable[[BudgetEvent], None]:
    """An alert handler keeping all but `forecast` alerts (tested on their own)."""
    return lambda e: None if e.event == "forecast" else into.append(e)


def test_thresholds_fire_once_each(make: Any) -> None:
    got: list[BudgetEvent] = []
    global_got: list[BudgetEvent] = []
    remove = add_alert_handler(_no_forecast(global_got))
    try:
        clock = Clock()
        rt = make(Budget(name="w", limit_usd=3, period="day", warn_at=(0.25, 0.5), on_alert=_no_forecast(got)), clock=clock)
        m = mgr(rt)
        for _ in range(10):  # $3.00 in $0.30 steps: 25% after $0.90, 50% after $1.50, 100% at $3.00
            call(rt)
        rt.flush()
        assert [(e.event, e.threshold, e.spent_usd) for e in got] == [
            ("warn", 0.25, Decimal("0.9")),
            ("warn", 0.5, Decimal("1.5")),
            ("warn", 1.0, Decimal("3.0")),
        ]
        assert m.refresh()  # the store figure crosses the same thresholds: nothing new
        with pytest.raises(BudgetExceeded):
            call(rt)
        with pytest.raises(BudgetExceeded):
            call(rt)
        rt.flush()
        assert [e.event for e in got] == ["warn", "warn", "warn", "block"]  # 2 blocks, 1 alert
        # a restarted process does not alert again for this period
        rt2 = make(Budget(name="w", limit_usd=3, period="day", warn_at=(0.25, 0.5), on_alert=_no_forecast(got)), clock=clock)
        mgr(rt2).flush()
        with pytest.raises(BudgetExceeded):
            call(rt2)
        rt2.flush()
        assert [e.event for e in got] == ["warn", "warn", "warn", "block", "block"]
        # next day: a reset, and each threshold fires once again
        clock.advance(24 * 3600)
        call(rt)
        call(rt)
        call(rt)
        rt.flush()
        assert [(e.event, e.threshold) for e in got[5:]] == [("reset", None), ("warn", 0.25)]
        assert global_got == got
        rows = store_events(rt)
        blocks = [r for r in rows if r["event"] == "block"]
        assert len(blocks) == 3  # every refused call is a row, even when not alerted again
        warns = [r for r in rows if r["event"] == "warn"]
        assert [(r["threshold"], r["spent_usd"]) for r in warns] == [
            (0.25, Decimal("0.9")), (0.5, Decimal("1.5")), (1.0, Decimal("3")), (0.25, Decimal("0.9"))
        ]
        assert all(r["limit_usd"] == Decimal(3) and r["project"] == "shop" for r in rows)
    finally:
        remove()


def test_midnight_reset_in_a_non_utc_timezone(make: Any) -> None:
    tz = "Asia/Tokyo"  # UTC+9: local midnight is 15:00 UTC
    clock = Clock()
    clock.set("2026-03-18T23:50:00", tz)
    rt = make(Budget(name="daily", limit_usd="0.6", period="day", timezone=tz), clock=clock)
    m = mgr(rt)
    call(rt)
    call(rt)
    clock.set("2026-03-18T23:59:59", tz)
    with pytest.raises(BudgetExceeded):
        call(rt)
    clock.set("2026-03-19T00:00:01", tz)
    assert m.spent("daily") == 0
    call(rt)  # a new day in Tokyo
    rt.flush()
    assert m.refresh()
    assert m.spent("daily") == Decimal("0.3")  # yesterday's spend is in the store, not in today
    # UTC midnight (09:00 in Tokyo) is not a reset
    clock.set("2026-03-19T09:00:01", tz)
    call(rt)
    with pytest.raises(BudgetExceeded):
        call(rt)
    rows = store_events(rt)
    resets = [r for r in rows if r["event"] == "reset"]
    assert len(resets) == 1
    assert resets[0]["period_start"] == datetime(2026, 3, 18, 15, 0)  # Tokyo midnight, stored in UTC


def test_rolling_window(make: Any) -> None:
    clock = Clock()
    rt = make(Budget(name="r", limit_usd="0.6", period="24h"), clock=clock)
    m = mgr(rt)
    call(rt)
    clock.advance(6 * 3600)
    call(rt)
    clock.advance(17 * 3600)  # 23 h after the first call: both still in the window
    rt.flush()
    assert m.refresh()
    with pytest.raises(BudgetExceeded):
        call(rt)
    # the first call leaves the window: the ledger keeps a rolling window in 16 buckets and counts
    # the oldest one whole (a window up to 1/16 longer, the safe direction): 1.5 h buckets here
    clock.advance(2.5 * 3600 + 1)
    assert m.refresh()
    assert m.spent("r") == Decimal("0.3")
    call(rt)
    with pytest.raises(BudgetExceeded):
        call(rt)
    assert not [r for r in store_events(rt) if r["event"] == "reset"]  # rolling windows never reset


def test_32_threads_never_exceed_the_limit(make: Any) -> None:
    rt = make(Budget(name="shared", limit_usd=2, period="month"))
    m = mgr(rt)
    settled: list[Decimal] = []
    lock = threading.Lock()
    stop = threading.Event()
    barrier = threading.Barrier(32)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        while True:
            try:
                # worst case 10 tokens ($0.03); actual 1-10 tokens
                cost = call(rt, max_out=10, out=rng.randint(1, 10), on_model=lambda: time.sleep(rng.random() / 1000))
            except BudgetExceeded:
                return
            with lock:
                settled.append(cost or Decimal(0))

    def refresher() -> None:  # the store's figure changes under the threads' feet
        while not stop.is_set():
            m.refresh()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    r = threading.Thread(target=refresher)
    r.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    r.join()
    total = sum(settled, Decimal(0))
    assert total <= Decimal(2)
    assert total > Decimal(2) - Decimal("0.03")  # the budget was used up, to the last call's worst case
    assert m.reserved_usd("shared") == 0
    rt.flush()
    assert m.refresh()
    assert m.spent("shared") == total  # exactly: nothing counted twice, nothing lost


def test_asyncio_tasks_share_the_budget(make: Any) -> None:
    rt = make(Budget(name="a", limit_usd="1.5"))

    async def one() -> bool:
        try:
            res = common.budget_reserve(rt, Attribution(project="shop"), model="m-out", provider=None, prompt_tokens=0, max_output_tokens=100)
        except BudgetExceeded:
            return False
        await asyncio.sleep(0.01)  # the provider call: other tasks reserve meanwhile
        common.budget_settle(rt, res, Decimal("0.3"))
        return True

    async def main() -> list[bool]:
        return await asyncio.gather(*(one() for _ in range(20)))

    assert sum(asyncio.run(main())) == 5
    assert mgr(rt).spent("a") == Decimal("1.5")


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []
    delay = 0.0

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.delay)
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _server(delay: float = 0.0) -> ThreadingHTTPServer:
    handler = type("Hook", (_Hook,), {"received": [], "delay": delay})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def test_webhook_receives_alerts(make: Any) -> None:
    srv = _server()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/hook"
        rt = make(Budget(name="hooked", limit_usd="0.6", warn_at=(0.5,)), webhook_url=url)
        call(rt)
        call(rt)
        with pytest.raises(BudgetExceeded):
            call(rt)
        rt.flush()
        received = srv.RequestHandlerClass.received  # type: ignore[attr-defined]
        deadline = time.monotonic() + 5
        while len(received) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [(b["event"], b["threshold"]) for b in received] == [("warn", 0.5), ("warn", 1.0), ("block", None)]
        assert received[0]["budget"] == "hooked" and received[0]["spent_usd"] == "0.300000000"
        assert received[0]["limit_usd"] == "0.600000000" and received[0]["text"].startswith("tokentrail: budget 'hooked'")
        assert received[2]["estimated_cost_usd"] == "0.300000000"
    finally:
        srv.shutdown()


def test_dead_webhook_does_not_slow_calls(make: Any) -> None:
    srv = _server(delay=3.0)  # accepts, then hangs
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/hook"
        rt = make(Budget(name="per-user", limit_usd="0.3", period="day", scope={"user_id": "*"}, webhook_url=url))
        m = mgr(rt)
        m.webhooks.timeout = 2.0
        worst = 0.0
        for i in range(40):  # 40 users hit their limit: 40 warn alerts for a hanging endpoint
            t = time.perf_counter()
            call(rt, Attribution(project="shop", user_id=f"u{i}"))
            worst = max(worst, time.perf_counter() - t)
            if i % 10 == 0:
                t = time.perf_counter()
                rt.flush()
                assert time.perf_counter() - t < 1.0
        assert worst < 0.5  # a call never waits for the webhook (it hangs 3 s, times out at 2 s)
        t = time.perf_counter()
        rt.shutdown()  # waits at most 1 s for the webhook thread
        assert time.perf_counter() - t < 3.0
        assert m.webhooks.sent == 0
    finally:
        srv.shutdown()


def test_unreachable_webhook_is_logged_not_raised(make: Any, caplog: pytest.LogCaptureFixture) -> None:
    srv = _server()
    port = srv.server_address[1]
    srv.shutdown()
    srv.server_close()  # nothing listens there now
    rt = make(Budget(name="b", limit_usd="0.3", warn_at=()), webhook_url=f"http://127.0.0.1:{port}/x")
    with caplog.at_level("WARNING", logger="tokentrail.budgets"):
        call(rt)
        rt.flush()
        deadline = time.monotonic() + 5
        while mgr(rt).webhooks.failed == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert mgr(rt).webhooks.failed == 1
    assert any("reached 100%" in r.getMessage() for r in caplog.records)
    assert any("webhook" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)


def test_refresh_keeps_spend_the_store_does_not_hold_yet(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The double-counting rule: a refresh drops only the local spend settled before it began
    (its spans were flushed into the figure it reads); a call settled while it runs stays local."""
    rt = make(Budget(name="b", limit_usd=10))
    m = mgr(rt)
    call(rt)  # settled before the refresh: in the store's figure afterwards
    real_client = m._client
    during: list[Decimal | None] = []

    def client_with_a_call_meanwhile() -> Any:
        during.append(call(rt))  # settles after the refresh started; its span was not flushed
        return real_client()

    monkeypatch.setattr(m, "_client", client_with_a_call_meanwhile)
    assert m.refresh()
    assert during == [Decimal("0.3")]
    assert m.spent("b") == Decimal("0.6")  # 0.3 from the store + 0.3 still local
    monkeypatch.setattr(m, "_client", real_client)
    assert m.refresh()  # now the second span is in the store too: still 0.6, not 0.9
    assert m.spent("b") == Decimal("0.6")


def test_spend_settled_without_a_span_is_kept_by_the_ledger(make: Any) -> None:
    """Direct use of the manager (no span): the store never sees the spend, the ledger keeps it
    (the store's figure is only a floor)."""
    rt = make(Budget(name="b", limit_usd=10))
    m = mgr(rt)
    r = m.reserve(SHOP, model="m-out", provider=None, prompt_tokens=0, max_output_tokens=100)
    assert r is not None
    m.settle(r, Decimal("0.3"))
    assert m.refresh()
    assert m.spent("b") == Decimal("0.3")  # no span in the store, still counted
    assert m.refresh()
    assert m.spent("b") == Decimal("0.3")


def test_failed_refresh_keeps_local_spend(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    rt = make(Budget(name="b", limit_usd="0.6"))
    m = mgr(rt)
    call(rt)

    def broken() -> Any:
        raise OSError("store unreachable")

    monkeypatch.setattr(m, "_client", broken)
    assert not m.refresh()
    assert m.spent("b") == Decimal("0.3")
    call(rt)
    with pytest.raises(BudgetExceeded):
        call(rt)


FORK_SCRIPT = """
import os, sys, time
from decimal import Decimal
sys.path.insert(0, sys.argv[2])
import test_budgets_manager as t
import tokentrail
from tokentrail import Budget, BudgetExceeded

os.environ["TOKENTRAIL_BUDGET_REFRESH_SECONDS"] = "3600"
rt = tokentrail.configure(home=sys.argv[1], project="shop", budgets=[Budget(name="b", limit_usd="0.6")], prices=t.PRICES)
rt.clock = t.Clock()
m = t.mgr(rt)
m.wait_ready(10)
assert m.refresh()  # the parent opens the store before forking (a fresh home defers that)
t.call(rt)  # $0.30, known to the child too (the parent flushes it)
rt.flush()
r, w = os.pipe()
pid = os.fork()
if pid == 0:  # the child: report through the pipe
    code = 1
    try:
        start = time.monotonic()
        t.call(rt)
        blocked = False
        try:
            t.call(rt)
        except BudgetExceeded:
            blocked = True
        ok = (not m.refresh(), blocked, m.spent("b") == Decimal("0.6"), time.monotonic() - start < 5)
        os.write(w, repr(ok).encode())
        rt.flush()
        code = 0
    finally:
        os._exit(code)
os.close(w)
_, status = os.waitpid(pid, 0)
print(os.read(r, 1000).decode(), os.WEXITSTATUS(status))
# the parent reads the store as before; the child's call reached it through the spool
print(m.refresh(), m.spent("b"))
rt.shutdown()
"""


def test_forked_worker_keeps_enforcing(tt_home: Path) -> None:
    """A worker forked after the embedded store was read (chdb cannot be used after fork, as
    under gunicorn --preload) still enforces with what it knows, without hanging. A fresh
    interpreter: pytest's own threads must not be what is forked."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", FORK_SCRIPT, str(tt_home), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == ["(True, True, True, True) 0", "True 0.600000000"]


def test_forecast_alert_fires_once_per_period_with_the_projected_date(make: Any) -> None:
    """$0.30 a call on a $6 month budget, on March 10 (9 of 31 days gone): the 6th call makes
    $1.80, a rate that projects $6.20 by the month's end and the limit on March 31. One
    `forecast` alert for the period, not one per call after it."""
    clock = Clock()
    clock.set("2026-03-10T00:00:00")
    rt = make(Budget(name="monthly", limit_usd=6, period="month", warn_at=()), clock=clock)
    for _ in range(5):
        call(rt)
    assert not [r for r in store_events(rt) if r["event"] == "forecast"]  # $1.50: $5.17 projected
    for _ in range(3):
        call(rt)
    rows = [r for r in store_events(rt) if r["event"] == "forecast"]
    assert len(rows) == 1
    (row,) = rows
    assert row["estimated_cost_usd"] == Decimal("6.2")
    assert row["spent_usd"] == Decimal("1.8")
    assert "forecast to reach its $6.00 limit on 2026-03-31 00:00 UTC" in row["message"]


def test_the_forecast_claims_winner_alerts_when_a_losing_thread_takes_the_lock_first(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two threads of one process see the forecast cross at once: the ledger's claim (atomic
    across processes) goes to one. Forced order: the loser records "seen" first; the winner
    still alerts (CI once saw no alert at all from 4 processes x 4 threads on Redis)."""
    clock = Clock()
    clock.set("2026-03-10T00:00:00")
    rt = make(Budget(name="monthly", limit_usd=6, period="month", warn_at=()), clock=clock)
    for _ in range(5):
        call(rt)  # $1.50: no forecast yet
    ledger = mgr(rt)._ledger
    real = ledger.claim_forecast
    lost = threading.Event()
    results: list[bool] = []

    def claim(item: Any, now: int) -> bool:
        won = real(item, now)
        results.append(won)
        if won:
            assert lost.wait(10)  # the loser goes on (and takes the manager's lock) first
            time.sleep(0.1)
        else:
            lost.set()
        return won

    monkeypatch.setattr(ledger, "claim_forecast", claim)
    threads = [threading.Thread(target=call, args=(rt,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [False, True]
    assert len([r for r in store_events(rt) if r["event"] == "forecast"]) == 1
