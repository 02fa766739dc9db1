"""Allowances on a real embedded store with an injected clock: rollover across a month end in a
time zone (and a month with no calls), allowances with overage (warn, block, downgrade), the
rows every carry and overage leaves in budget_events, and the state rebuilt from them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from rich.console import Console

import tokentrail
from tokentrail import AllowanceExceeded, Budget, BudgetExceeded, ConfigError, runtime, testing
from tokentrail.budgets.allowances import Account, replay
from tokentrail.budgets.cli import budgets_table
from tokentrail.budgets.status import allowance_text
from tokentrail.budgets.status import status as budget_status
from tokentrail.context import Attribution
from tokentrail.exporters.rows import encode
from tokentrail.queries.budgets import budget_events
from tokentrail.store import open_store, spool

NS = 1_000_000_000
PRICES = {"m-out": {"input_per_mtok": 0, "output_per_mtok": 3000}}  # 100 output tokens: $0.30
SHOP = Attribution(project="shop")
NY = ZoneInfo("America/New_York")


class Clock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now

    def at(self, iso: str, tz: ZoneInfo = NY) -> None:
        self.now = int(datetime.fromisoformat(iso).replace(tzinfo=tz).timestamp()) * NS


@pytest.fixture
def make(tt_home: Path, monkeypatch: pytest.MonkeyPatch, runtimes: list[runtime.Tokentrail]) -> Iterator[Callable[..., runtime.Tokentrail]]:
    monkeypatch.setenv("TOKENTRAIL_BUDGET_REFRESH_SECONDS", "3600")
    made = runtimes

    def _make(*budgets: Budget, clock: Clock) -> runtime.Tokentrail:
        rt = tokentrail.configure(home=tt_home, project="shop", budgets=list(budgets), prices=PRICES)
        rt.clock = clock
        made.append(rt)
        assert rt.budgets is not None
        rt.budgets.wait_ready(10)
        return rt

    yield _make


def _calls(rt: runtime.Tokentrail, n: int, attr: Attribution = SHOP) -> int:
    """Up to n calls of exactly $0.30 each; how many went through."""
    m = rt.budgets
    assert m is not None
    done = 0
    for _ in range(n):
        try:
            r = m.reserve(attr, model="m-out", provider=None, prompt_tokens=0, max_output_tokens=100)
        except BudgetExceeded:
            break
        assert r is not None
        m.settle(r, Decimal("0.3"))
        done += 1
    return done


def _rows(rt: runtime.Tokentrail, budget: str) -> list[dict[str, Any]]:
    assert rt.budgets is not None
    rt.budgets.flush()
    rt.provider.force_flush()
    with open_store(rt.settings) as store:
        return budget_events(store, budget=budget, events=("carry", "overage"), limit=None, oldest_first=True)


def _spans(rt: runtime.Tokentrail, *rows: tuple[str, str, str]) -> None:
    """Model-call spans (UTC timestamp, user_id, cost) into the spool, as an application writes them."""
    payload = encode(
        {"timestamp": ts, "span_id": f"{i:016x}", "operation": "chat", "project": "shop", "user_id": user, "cost_usd": cost, "cost_status": "priced"}
        for i, (ts, user, cost) in enumerate(rows)
    )
    spool.write(rt.settings.spool_dir, "spans", spool.new_batch_id(), payload)


def _ny(iso: str) -> datetime:
    return datetime.fromisoformat(iso).replace(tzinfo=NY).astimezone(timezone.utc)


def test_rollover_carries_unused_spend_across_a_new_york_month_end_and_a_month_without_calls(make: Callable[..., runtime.Tokentrail]) -> None:
    clock = Clock()
    budget = Budget(name="savings", limit_usd="1.2", period="month", timezone="America/New_York", rollover={"periods": 1}, warn_at=())
    clock.at("2026-01-31T23:00:00")  # already February in UTC (04:00), still January in New York
    rt = make(budget, clock=clock)
    m = rt.budgets
    assert m is not None
    assert _calls(rt, 1) == 1  # $0.30 of January's $1.20: $0.90 unused
    clock.at("2026-02-01T00:30:00")
    assert _calls(rt, 10) == 7  # February: $1.20 + $0.90 carried = $2.10 = 7 calls
    assert m.spent("savings") == Decimal("2.1")
    clock.at("2026-04-01T09:00:00")  # February used everything, March had no calls at all
    assert _calls(rt, 10) == 8  # carry into March 0, into April min(cap $1.20, $1.20 + 0): $2.40 = 8 calls
    assert m.ledger.carry(m._named("savings", ""), clock.now) == 1_200_000_000

    rows = _rows(rt, "savings")
    assert [(r["event"], r["estimated_cost_usd"], r["period_start"]) for r in rows] == [
        ("carry", Decimal("0.9"), _ny("2026-02-01T00:00:00").replace(tzinfo=None)),
        ("carry", Decimal("1.2"), _ny("2026-04-01T00:00:00").replace(tzinfo=None)),
    ]
    state = replay(rows)
    assert state[("savings", "", _ny("2026-02-01T00:00:00").replace(tzinfo=None))] == Account(carry_usd=Decimal("0.9"))
    assert state[("savings", "", _ny("2026-04-01T00:00:00").replace(tzinfo=None))].carry_usd == Decimal("1.2")
    # `tokentrail budgets` and the Budgets page: April's limit with its carry
    with open_store(rt.settings) as store:
        (st,) = budget_status(store, rt.settings, clock.now)
    assert (st.limit_usd, st.carry_usd, st.effective_limit_usd, st.remaining_usd) == (
        Decimal("1.2"), Decimal("1.2"), Decimal("2.4"), Decimal("2.4"),
    )  # fmt: skip
    assert allowance_text(st) == "carry +$1.20"


def test_rollover_capped_in_dollars_and_by_periods(make: Callable[..., runtime.Tokentrail]) -> None:
    clock = Clock()
    capped = Budget(name="dollars", limit_usd="1.2", period="day", timezone="America/New_York", rollover={"max_usd": "0.6", "periods": 3}, warn_at=())
    clock.at("2026-03-07T12:00:00")  # the day before New York's clocks go forward (a 23-hour day)
    rt = make(capped, clock=clock)
    m = rt.budgets
    assert m is not None
    assert _calls(rt, 1) == 1  # $0.90 unused, carried at most $0.60
    clock.at("2026-03-08T12:00:00")
    assert _calls(rt, 10) == 6  # $1.80
    clock.at("2026-03-12T12:00:00")  # three days without calls: the $0.60 cap holds
    assert _calls(rt, 10) == 6
    rows = _rows(rt, "dollars")
    assert [r["estimated_cost_usd"] for r in rows] == [Decimal("0.6"), Decimal("0.6")]


def test_allowance_with_overage_warn_prices_each_call_past_the_allowance(make: Callable[..., runtime.Tokentrail]) -> None:
    clock = Clock()
    clock.at("2026-05-10T12:00:00")
    b = Budget(name="seat", limit_usd="1.5", period="month", scope={"user_id": "*"}, allowance_usd="0.45", overage_rate="1.5", warn_at=())
    rt = make(b, clock=clock)
    alice = Attribution(project="shop", user_id="alice")
    assert _calls(rt, 10, alice) == 5  # the hard limit $1.50 still holds
    rows = sorted(_rows(rt, "seat"), key=lambda r: r["spent_usd"])  # one instant: spend orders them
    # call 2 crosses the $0.45 allowance by $0.15; calls 3-5 are all overage: x1.5
    assert [(r["scope_value"], r["estimated_cost_usd"], r["spent_usd"]) for r in rows] == [
        ("alice", Decimal("0.225"), Decimal("0.6")),
        ("alice", Decimal("0.45"), Decimal("0.9")),
        ("alice", Decimal("0.45"), Decimal("1.2")),
        ("alice", Decimal("0.45"), Decimal("1.5")),
    ]
    (acct,) = replay(rows).values()
    assert acct == Account(overage_usd=Decimal("1.575"), overage_calls=4)
    assert "$0.225 in overage at x1.5" in rows[0]["message"]
    _spans(rt, ("2026-05-10 16:00:00", "alice", "1.5"))  # alice's five calls as the store holds them
    with open_store(rt.settings) as store:
        (st,) = budget_status(store, rt.settings, clock.now)
    assert (st.scope_value, st.spent_usd, st.allowance_usd, st.overage_usd, st.overage_calls, st.state) == (
        "alice", Decimal("1.5"), Decimal("0.45"), Decimal("1.575"), 4, "exceeded",
    )  # fmt: skip
    assert allowance_text(st) == "$0.45 included, overage $1.575 (4 calls)"


def test_allowance_overage_block_and_downgrade_show_the_overage_price(make: Callable[..., runtime.Tokentrail]) -> None:
    clock = Clock()
    clock.at("2026-05-10T12:00:00")
    block = Budget(name="included", limit_usd=5, allowance_usd="0.6", overage="block", overage_rate=2, scope={"team": "search"}, warn_at=())
    down = Budget(name="cheap-after", limit_usd=5, allowance_usd="0.3", overage="downgrade", downgrade_to="m-small", scope={"team": "ads"}, warn_at=())
    rt = make(block, down, clock=clock)
    m = rt.budgets
    assert m is not None
    search = Attribution(project="shop", team="search")
    assert _calls(rt, 10, search) == 2
    with pytest.raises(AllowanceExceeded) as e:
        m.reserve(search, model="m-out", provider=None, prompt_tokens=0, max_output_tokens=100)
    assert (e.value.budget, e.value.limit_usd, e.value.spent_usd, e.value.overage_usd, e.value.downgrade_to) == (
        "included", Decimal("0.6"), Decimal("0.6"), Decimal("0.6"), None,
    )  # fmt: skip
    assert "would cost up to $0.60 in overage (x2 the price)" in str(e.value)
    assert isinstance(e.value, BudgetExceeded) and e.value.reason == "allowance"  # LangChain fallbacks catch it
    ads = Attribution(project="shop", team="ads")
    assert _calls(rt, 10, ads) == 1
    with pytest.raises(AllowanceExceeded) as d:
        m.reserve(ads, model="m-out", provider=None, prompt_tokens=0, max_output_tokens=100)
    assert d.value.downgrade_to == "m-small" and d.value.overage_usd == Decimal("0.3")
    m.flush()
    rt.provider.force_flush()
    with open_store(rt.settings) as store:
        blocks = sorted(budget_events(store, events=("block",), limit=None), key=lambda r: r["budget"], reverse=True)
    # the loop's refusal and the explicit one: every refusal is a row
    assert [(r["budget"], r["estimated_cost_usd"]) for r in blocks] == [("included", Decimal("0.3"))] * 2 + [("cheap-after", Decimal("0.3"))] * 2
    assert "up to $0.60 in overage at x2" in blocks[0]["message"]
    assert "use 'm-small'" in blocks[2]["message"]


@pytest.mark.parametrize(
    ("kw", "field", "fix"),
    [
        ({"period": "24h", "rollover": {"periods": 2}}, "budgets[b].rollover", "use period='day'"),
        ({"rollover": {"weeks": 2}}, "budgets[b].rollover.weeks", "rollover={'periods': 2}"),
        ({"rollover": {"periods": 0}}, "budgets[b].rollover.periods", "whole number >= 1"),
        ({"allowance_usd": 20}, "budgets[b].allowance_usd", "allowance_usd <= limit_usd"),
        ({"allowance_usd": 5, "overage": "bill"}, "budgets[b].overage", "'warn', 'block' or 'downgrade'"),
        ({"allowance_usd": 5, "overage": "downgrade"}, "budgets[b].downgrade_to", "downgrade_to='gpt-4o-mini'"),
        ({"overage": "block"}, "budgets[b].overage", "give allowance_usd too"),
        ({"allowance_usd": 5, "overage_rate": "x"}, "budgets[b].overage_rate", "overage_rate=1.2"),
    ],
)
def test_bad_allowance_config_names_the_field_and_the_fix(kw: dict[str, Any], field: str, fix: str) -> None:
    with pytest.raises(ConfigError) as e:
        Budget(name="b", limit_usd=10, **kw)
    msg = str(e.value)
    assert field in msg and fix in msg and "\n" not in msg


def test_allowance_settings_from_toml(tmp_path: Path) -> None:
    (tmp_path / "tokentrail.toml").write_text(
        '[[budgets]]\nname = "seat"\nlimit_usd = 20\nallowance_usd = 10\noverage = "block"\noverage_rate = "1.2"\n'
        'scope = {user_id = "*"}\nrollover = {periods = 2, max_usd = 15}\n'
    )
    from tokentrail.config import resolve

    (b,) = resolve(config_file=tmp_path / "tokentrail.toml", home=str(tmp_path)).budgets
    assert (b.allowance_usd, b.overage, b.overage_rate, b.rollover) == (Decimal(10), "block", Decimal("1.2"), {"periods": 2, "max_usd": Decimal(15)})


def test_pool_lends_past_a_members_limit_and_the_debt_is_repaid_next_period(make: Callable[..., runtime.Tokentrail]) -> None:
    clock = Clock()
    clock.at("2026-03-10T12:00:00", timezone.utc)
    org = Budget(name="org", limit_usd="1.5", period="month", lend_limit_usd="0.6", warn_at=())
    search = Budget(name="search", limit_usd="0.6", period="month", scope={"team": "search"}, pool="org", warn_at=())
    ads = Budget(name="ads", limit_usd="0.3", period="month", scope={"team": "ads"}, pool="org", warn_at=())
    rt = make(org, search, ads, clock=clock)
    m = rt.budgets
    assert m is not None
    s, a = Attribution(project="shop", team="search"), Attribution(project="shop", team="ads")
    assert _calls(rt, 10, s) == 4  # its own $0.60, then $0.60 borrowed (the lend limit)
    assert _calls(rt, 10, a) == 1  # its own $0.30; the pool ($1.50) is now spent
    with pytest.raises(BudgetExceeded) as e:
        m.reserve(a, model="m-out", provider=None, prompt_tokens=0, max_output_tokens=100)
    assert e.value.budget == "org"  # ads may borrow, the pool has no room
    assert m.spent("org") == Decimal("1.5")
    clock.at("2026-04-02T12:00:00", timezone.utc)
    # April: search owes $0.60, repaid from its own $0.60: everything it spends is borrowed again
    assert _calls(rt, 10, s) == 2
    assert _rows(rt, "search") == []  # no rollover, no allowance: no carry or overage rows
    with open_store(rt.settings) as store:
        rows = budget_events(store, budget="search", events=("loan", "repay"), limit=None)
    state = replay(rows)
    march = state[("search", "", datetime(2026, 3, 1))]
    april = state[("search", "", datetime(2026, 4, 1))]
    assert (march.loan_usd, march.loans, march.repaid_usd) == (Decimal("0.6"), 2, Decimal(0))
    assert (april.loan_usd, april.loans, april.repaid_usd, april.carry_usd) == (Decimal("0.6"), 2, Decimal("0.6"), Decimal("-0.6"))
    assert any("borrowed $0.30 from pool 'org'" in r["message"] for r in rows)
    with open_store(rt.settings) as store:
        shown = {st.budget: st for st in budget_status(store, rt.settings, clock.now)}
    # April: search's $0.60 limit less the $0.60 repaid; what it spent was borrowed
    assert (shown["search"].carry_usd, shown["search"].effective_limit_usd, shown["search"].loan_usd) == (
        Decimal("-0.6"), Decimal(0), Decimal("0.6"),
    )  # fmt: skip
    assert allowance_text(shown["search"]) == "debt repaid $0.60; borrowed $0.60 (2 loans)"
    assert allowance_text(shown["ads"]) == "-"
    table = Console(width=250, record=True)
    table.print(budgets_table(list(shown.values()), {}))
    text = table.export_text()
    assert "Carry, loans, overage" in text and "borrowed $0.60 (2 loans)" in text


def test_pool_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"budgets\[search\]\.pool.*is not a pool budget.*lend_limit_usd"):
        tokentrail.budgets.coerce_budgets([Budget(name="org", limit_usd=5), Budget(name="search", limit_usd=1, pool="org")])
    with pytest.raises(ConfigError, match=r"budgets\[search\]\.pool.*calendar period"):
        Budget(name="search", limit_usd=1, period="24h", pool="org")
    with pytest.raises(ConfigError, match=r"budgets\[org\]\.scope.*one budget"):
        Budget(name="org", limit_usd=1, lend_limit_usd=1, scope={"team": "*"})


def test_a_period_started_by_a_figure_still_records_its_carry(make: Callable[..., runtime.Tokentrail]) -> None:
    clock = Clock()
    clock.at("2026-06-01T12:00:00", timezone.utc)
    rt = make(Budget(name="daily", limit_usd="0.9", period="day", rollover={"periods": 1}, warn_at=()), clock=clock)
    m = rt.budgets
    assert m is not None
    assert _calls(rt, 1) == 1
    clock.at("2026-06-02T08:00:00", timezone.utc)
    assert m.carry_usd("daily") == Decimal("0.6")  # no call yet today: the figure starts the day
    assert [(r["event"], r["estimated_cost_usd"]) for r in _rows(rt, "daily")] == [("carry", Decimal("0.6"))]


def test_rollover_and_pools_say_they_need_the_file_ledger(tt_home: Path) -> None:
    pytest.importorskip("redis")
    for budgets, field in (
        ([Budget(name="s", limit_usd=1, rollover={"periods": 1})], "budgets[s].rollover"),
        ([Budget(name="org", limit_usd=5, lend_limit_usd=1), Budget(name="m", limit_usd=1, pool="org")], "budgets[m].pool"),
    ):
        rt = tokentrail.configure(home=tt_home, budgets=budgets, budget_backend="redis://127.0.0.1:1/0")
        with pytest.raises(ConfigError) as e:
            rt.budgets  # noqa: B018 (built on first use, as for a bad budget_backend)
        assert field in str(e.value) and "budget_backend='file'" in str(e.value)
    testing.reset()
