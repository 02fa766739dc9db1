"""Budgets for foreign model calls, with the real instrumentations and clients.

openai-v2 carries the request model on its span's start: the call is reserved then, settled
with its real cost when the span ends, and blocked before the request is sent when it does not
fit. OpenInference's LangChain spans start with no model: their calls are only accounted
(the row counts in the budget's spend), never blocked. A call seen by tokentrail's hooks and
by openai-v2 is reserved and counted once.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from clocks import FixedClock
from conftest import spans
from mock_providers import openai_server
from test_interop_in import PLAIN, Foreign, _langchain, _openai

import tokentrail
from tokentrail import Budget, BudgetExceeded, runtime, testing
from tokentrail.store import open_store

# overrides: the same dollars whatever the day (the span's start is the wall clock's)
PER_MTOK = {"input_per_mtok": 1000, "output_per_mtok": 2000}
PRICES = {"gpt-4o": PER_MTOK, "gpt-4o-mini-2024-07-18": PER_MTOK}
CALL = Decimal("0.411")  # PLAIN: 321 input * $1000/M + 45 output * $2000/M


def _configure(home: Path, *budgets: Budget) -> runtime.Tokentrail:
    return tokentrail.configure(home=home, project="shop", prices=PRICES, budgets=list(budgets))


@pytest.fixture
def make(tt_home: Path, monkeypatch: pytest.MonkeyPatch, clock: FixedClock) -> Iterator[Any]:
    monkeypatch.setenv("TOKENTRAIL_BUDGET_REFRESH_SECONDS", "3600")
    made: list[tuple[runtime.Tokentrail, Foreign]] = []

    def make(*budgets: Budget, instrument: tuple[str, ...] = ("openai-v2",)) -> tuple[runtime.Tokentrail, Foreign]:
        rt = _configure(tt_home, *budgets)
        f = Foreign(rt).instrument(*instrument)
        made.append((rt, f))
        return rt, f

    yield make
    for rt, f in made:
        f.close()
        rt.shutdown()
    testing.reset()


def _events(rt: runtime.Tokentrail) -> list[tuple[Any, ...]]:
    rt.flush()
    with open_store(rt.settings) as store:
        res = store.query("SELECT budget, event, threshold, scope_value FROM tokentrail.budget_events ORDER BY timestamp, event")
        return [tuple(r) for r in res.result_rows]


def _call(srv: Any, user: str) -> None:
    import openai

    client = openai.OpenAI(base_url=srv.url + "/v1", api_key="sk-test", max_retries=0)
    with tokentrail.attributes(user_id=user):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=100)


def test_openai_v2_reserved_settled_and_blocked_before_the_request(make: Any) -> None:
    rt, foreign = make(
        Budget(name="per-user", limit_usd="0.5", period="day", scope={"user_id": "*"}),
        Budget(name="soft", limit_usd="0.4", period="day", action="warn", warn_at=()),
    )
    m = rt.budgets
    assert m is not None
    with openai_server(**PLAIN) as srv:
        _call(srv, "alice")  # reserves 100 output tokens ($0.20), settles $0.411
        assert len(srv.requests) == 1
        assert (m.spent("per-user", "alice"), m.reserved_usd("per-user", "alice")) == (CALL, Decimal(0))
        with pytest.raises(BudgetExceeded) as e:
            _call(srv, "alice")  # $0.411 + $0.20 > $0.50: blocked, no request sent
        assert len(srv.requests) == 1
        assert (e.value.budget, e.value.scope_value, e.value.estimated_cost_usd) == ("per-user", "alice", Decimal("0.2"))
        _call(srv, "bob")  # the instrumentation still works after a block
        assert len(srv.requests) == 2
    assert (m.spent("per-user", "alice"), m.spent("per-user", "bob"), m.spent("soft")) == (CALL, CALL, 2 * CALL)
    rows = spans(rt, "framework = 'otel-genai'")
    assert [(r["user_id"], r["status"], r["error_type"], r["input_tokens"], r["cost_usd"]) for r in rows] == [
        ("alice", "ok", "", 321, CALL),
        ("alice", "error", "BudgetExceeded", 0, None),
        ("bob", "ok", "", 321, CALL),
    ]
    # the block is in the user's own trace too: the instrumentation's span, ended with the error
    blocked = [s for s in foreign.memory.get_finished_spans() if s.status.status_code.name == "ERROR"]
    assert [s.attributes.get("error.type") for s in blocked] == ["BudgetExceeded"]
    events = _events(rt)
    assert ("soft", "warn", 1.0, "") in events  # warn mode: the call goes through, the event is recorded
    assert ("per-user", "block", None, "alice") in events


def test_openinference_langchain_only_accounts(make: Any) -> None:
    """Its spans start with no model (and inside LangChain's callbacks, which swallow what
    they raise): no reservation, no block; the call's row counts in the budget's spend."""
    # `total`: the store's figure counts the rows whatever day the spans' own clock says
    rt, _ = make(Budget(name="per-user", limit_usd="0.1", period="total", scope={"user_id": "*"}), instrument=("openinference-langchain",))
    m = rt.budgets
    assert m is not None
    with openai_server(**PLAIN) as srv, tokentrail.attributes(user_id="alice"):
        _langchain(srv, False)
        _langchain(srv, False)  # over the limit already: still not blocked
        assert len(srv.requests) == 2
    assert m.spent("per-user", "alice") == 0  # nothing reserved or settled in process
    rows = spans(rt, "framework = 'openinference'")
    assert [r["cost_usd"] for r in rows] == [CALL, CALL]
    assert m.refresh()
    assert m.spent("per-user", "alice") == 2 * CALL  # the store's figure


def test_seen_by_tokentrail_and_openai_v2_reserved_once(make: Any) -> None:
    rt, foreign = make(Budget(name="hard", limit_usd="10", period="day"))
    m = rt.budgets
    assert m is not None
    with openai_server(**PLAIN) as srv:
        _langchain(srv, False, [tokentrail.langchain_handler()])
        _openai(srv, False)  # openai-v2 alone: its own reservation
    assert (m.spent("hard"), m.reserved_usd("hard")) == (2 * CALL, Decimal(0))
    rows = spans(rt, "operation = 'chat'")
    assert sorted(r["framework"] for r in rows) == ["langchain", "otel-genai"]
    assert foreign.processor.duplicates == 1
