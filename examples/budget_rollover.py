"""Rollover: the unused part of a month carries into the next, capped (here: one month's worth).

A clock is injected so the example crosses a month end in New York time: January spends $0.30
of $1.20, so February may spend $1.20 + $0.90. Every carry is a row in budget_events.

    python examples/budget_rollover.py
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import tokentrail
from tokentrail import Budget, BudgetExceeded
from tokentrail.context import Attribution

PRICES = {"my-model": {"input_per_mtok": 0, "output_per_mtok": 3000}}  # 100 output tokens: $0.30
NY = ZoneInfo("America/New_York")
now = [0]


def at(iso: str) -> None:
    now[0] = int(datetime.fromisoformat(iso).replace(tzinfo=NY).timestamp()) * 1_000_000_000


def calls(m: object, n: int) -> int:
    done = 0
    for _ in range(n):
        try:  # what the LangChain / LlamaIndex integrations do around each model call
            r = m.reserve(Attribution(project="shop"), model="my-model", provider=None, prompt_tokens=0, max_output_tokens=100)  # type: ignore[attr-defined]
        except BudgetExceeded:
            break
        m.settle(r, Decimal("0.30"))  # type: ignore[attr-defined]
        done += 1
    return done


def main() -> None:
    rt = tokentrail.configure(home=tempfile.mkdtemp(prefix="tokentrail-rollover-"), project="shop", prices=PRICES, budgets=[
        Budget(name="savings", limit_usd="1.20", period="month", timezone="America/New_York", rollover={"periods": 1}),
    ])  # fmt: skip
    rt.clock = lambda: now[0]
    at("2026-01-31T23:00:00")
    print(f"January:  {calls(rt.budgets, 1)} call")
    at("2026-02-01T00:30:00")
    m = rt.budgets
    assert m is not None
    print(f"February: {calls(m, 20)} calls (limit $1.20 + carried ${m.carry_usd('savings'):.2f})")
    tokentrail.shutdown()


if __name__ == "__main__":
    main()
