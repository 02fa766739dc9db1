"""A pool that lends: teams spend past their own budgets by borrowing from the org's unused
budget, up to a lending limit; each loan is a row, and the debt is repaid from the team's next
month (its own limit is lower by it, a `repay` row). A clock is injected to cross the month.

    python examples/budget_pool.py
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timezone
from decimal import Decimal

import tokentrail
from tokentrail import Budget, BudgetExceeded
from tokentrail.budgets.allowances import replay
from tokentrail.context import Attribution
from tokentrail.queries.budgets import budget_events
from tokentrail.store import open_store

PRICES = {"my-model": {"input_per_mtok": 0, "output_per_mtok": 3000}}  # 100 output tokens: $0.30
now = [int(datetime(2026, 3, 10, tzinfo=timezone.utc).timestamp()) * 1_000_000_000]


def calls(m: object, team: str) -> int:
    done = 0
    while True:
        try:
            r = m.reserve(Attribution(project="shop", team=team), model="my-model", provider=None, prompt_tokens=0, max_output_tokens=100)  # type: ignore[attr-defined]
        except BudgetExceeded as e:
            print(f"  {team}: calls {done}, then refused by {e.budget!r}")
            return done
        m.settle(r, Decimal("0.30"))  # type: ignore[attr-defined]
        done += 1


def main() -> None:
    rt = tokentrail.configure(home=tempfile.mkdtemp(prefix="tokentrail-pool-"), project="shop", prices=PRICES, budgets=[
        Budget(name="org", limit_usd="1.50", period="month", lend_limit_usd="0.60"),
        Budget(name="search", limit_usd="0.60", period="month", scope={"team": "search"}, pool="org"),
        Budget(name="ads", limit_usd="0.30", period="month", scope={"team": "ads"}, pool="org"),
    ])  # fmt: skip
    rt.clock = lambda: now[0]
    m = rt.budgets
    assert m is not None
    print("March")
    calls(m, "search")
    calls(m, "ads")
    now[0] = int(datetime(2026, 4, 2, tzinfo=timezone.utc).timestamp()) * 1_000_000_000
    print("April")
    calls(m, "search")
    m.flush()
    rt.provider.force_flush()
    with open_store(rt.settings) as store:
        rows = budget_events(store, budget="search", events=("loan", "repay"), limit=None)
    for (_, _, month), a in sorted(replay(rows).items(), key=lambda kv: kv[0][2]):
        print(f"search {month:%B}: borrowed ${a.loan_usd:.2f} in {a.loans} loans, repaid ${a.repaid_usd:.2f}")
    tokentrail.shutdown()


if __name__ == "__main__":
    main()
