"""An allowance with overage, GitHub Copilot's model: $0.60 included per user and month, then
each call's overage is priced at 1.5x its cost and recorded (overage="warn"); a second budget
refuses past its allowance and names a cheaper model (overage="downgrade").

    python examples/budget_allowance.py
"""

from __future__ import annotations

import tempfile
from decimal import Decimal

import tokentrail
from tokentrail import AllowanceExceeded, Budget, BudgetExceeded
from tokentrail.context import Attribution
from tokentrail.queries.budgets import budget_events
from tokentrail.store import open_store

PRICES = {"my-model": {"input_per_mtok": 0, "output_per_mtok": 3000}}  # 100 output tokens: $0.30


def main() -> None:
    rt = tokentrail.configure(home=tempfile.mkdtemp(prefix="tokentrail-allowance-"), project="shop", prices=PRICES, budgets=[
        Budget(name="seat", limit_usd="1.50", scope={"user_id": "*"}, allowance_usd="0.60", overage_rate="1.5", warn_at=()),
        Budget(name="interns", limit_usd=5, scope={"team": "interns"}, allowance_usd="0.30", overage="downgrade",
               downgrade_to="my-small-model", warn_at=()),
    ])  # fmt: skip
    m = rt.budgets
    assert m is not None
    alice = Attribution(project="shop", user_id="alice")
    calls = 0
    while True:
        try:
            r = m.reserve(alice, model="my-model", provider=None, prompt_tokens=0, max_output_tokens=100)
        except BudgetExceeded:
            break
        m.settle(r, Decimal("0.30"))
        calls += 1
    m.flush()
    rt.provider.force_flush()
    with open_store(rt.settings) as store:
        owed = sum(e["estimated_cost_usd"] for e in budget_events(store, budget="seat", events=("overage",), limit=None))
    print(f"alice: {calls} calls, ${Decimal('0.30') * calls:.2f} spent, overage owed ${owed:.2f}")
    intern = Attribution(project="shop", team="interns", user_id="bob")
    m.settle(m.reserve(intern, model="my-model", provider=None, prompt_tokens=0, max_output_tokens=100), Decimal("0.30"))
    try:
        m.reserve(intern, model="my-model", provider=None, prompt_tokens=0, max_output_tokens=100)
    except AllowanceExceeded as e:
        print(f"interns: refused, overage ${e.overage_usd:.2f}, use {e.downgrade_to}")
    tokentrail.shutdown()


if __name__ == "__main__":
    main()
