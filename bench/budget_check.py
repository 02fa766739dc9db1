"""Time a model call spends in budget checks: reserve (before the provider) + settle (after)
+ the budget's share of the span's end (stamping the settled cost for the refresh).

100 budgets configured; a call matches 4 of them (its project, its team among 97 team budgets,
its feature, a per-user budget). Also: a call matched by all 100, a first call of a new user
(scope matching and a new per-user budget), and, for scale, one OpenTelemetry SDK span with
10 attributes (what any tracer pays per call).

    .venv/bin/python bench/budget_check.py
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal

os.environ.setdefault("TOKENTRAIL_BUDGET_REFRESH_SECONDS", "3600")  # no refresh during the run

import tokentrail  # noqa: E402
from tokentrail import Budget  # noqa: E402
from tokentrail.context import Attribution  # noqa: E402
from tokentrail.pricing import Cost  # noqa: E402

N = 20_000
COST = Cost(Decimal("0.000012"), Decimal("0.00006"), Decimal("0.000072"), "priced")


def best_of(runs: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(runs))


def per_call(manager: object, attrs: list[Attribution], model: str = "gpt-4o-mini") -> float:
    reserve, settle = manager.reserve, manager.settle  # type: ignore[attr-defined]
    ended = manager._span_ended  # type: ignore[attr-defined]  # what its span processor does at span end
    t = time.perf_counter()
    for a in attrs:
        r = reserve(a, model=model, provider="openai", prompt_tokens=800, max_output_tokens=256)
        settle(r, COST)
        ended()
    return (time.perf_counter() - t) / len(attrs) * 1e6


def main() -> None:
    home = tempfile.mkdtemp(prefix="tokentrail-bench-")
    budgets = [Budget(name="project", limit_usd=10**6, scope={"project": "shop"})]
    budgets += [Budget(name=f"team-{i}", limit_usd=10**6, scope={"team": f"team-{i}"}) for i in range(97)]
    budgets += [
        Budget(name="feature", limit_usd=10**6, scope={"feature": "search"}),
        Budget(name="per-user", limit_usd=10**6, period="day", scope={"user_id": "*"}),
    ]
    rt = tokentrail.configure(home=home, project="shop", budgets=budgets)
    m = rt.budgets
    warm = Attribution(project="shop", team="team-42", feature="search", user_id="alice")
    per_call(m, [warm] * 1000)  # prices cached, instances built
    typical = best_of(5, lambda: per_call(m, [warm] * N))
    fresh = [Attribution(project="shop", team=f"team-{i % 97}", feature="search", user_id=f"user-{i}") for i in range(N)]
    new_users = per_call(m, fresh)
    rt.shutdown()

    rt = tokentrail.configure(home=home, project="shop", budgets=[Budget(name=f"all-{i}", limit_usd=10**6) for i in range(100)])
    m = rt.budgets
    per_call(m, [warm] * 1000)
    all_match = best_of(5, lambda: per_call(m, [warm] * (N // 4)))
    rt.shutdown()

    # the peer figure: one SDK span with 10 attributes, no exporter
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("bench")
    attrs = {f"attr.{i}": "value" for i in range(10)}

    def spans() -> float:
        t = time.perf_counter()
        for _ in range(N):
            tracer.start_span("chat gpt-4o-mini", attributes=attrs).end()
        return (time.perf_counter() - t) / N * 1e6

    span = best_of(5, spans)
    # a process's first call waits for the first read of the store (once)
    cold = tokentrail.configure(home=home, budgets=budgets).budgets
    t = time.perf_counter()
    per_call(cold, [warm])
    first_ms = (time.perf_counter() - t) * 1e3
    tokentrail.shutdown()
    print(f"budget check (reserve + settle + span end), 100 budgets, 4 match: {typical:6.1f} µs/call")
    print(f"  first call of a new user (scope match + new budget state):     {new_users:6.1f} µs/call")
    print(f"  all 100 budgets match the call:                                {all_match:6.1f} µs/call")
    print(f"  a process's first call (waits for the first store read, once): {first_ms:6.0f} ms")
    print(f"peer: one OpenTelemetry SDK span with 10 attributes:            {span:6.1f} µs/span")


if __name__ == "__main__":
    main()
