"""A new process's first instrumented call waits for nothing slow, and budgets still hold:
the tokenizer loads in the background (reservations count with an upper bound until then),
the budget manager enforces with the last process's figures (or nothing, in a fresh home)
until its first store read (one refresh interval later), and genai-prices plans come from
the home's memo.

The store is held by the test (its lock) while the calls are made, so "did not read the
store" is checked without timing anything."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind

import tokentrail
from tokentrail import Budget, BudgetExceeded, runtime
from tokentrail.budgets import snapshot
from tokentrail.context import Attribution
from tokentrail.instrumentation import common
from tokentrail.pricing import PriceBook
from tokentrail.store.lock import exclusive
from tokentrail.usage import Usage

NS = 1_000_000_000
T0 = int(datetime(2026, 3, 18, 12, 0, tzinfo=timezone.utc).timestamp()) * NS
# $3000 per million output tokens: 100 output tokens cost exactly $0.30
PRICES = {"m-out": {"input_per_mtok": 0, "output_per_mtok": 3000}}
SHOP = Attribution(project="shop")
HARD = Budget(name="hard", limit_usd="1.00", period="month")


@pytest.fixture
def start(tt_home: Path, monkeypatch: pytest.MonkeyPatch, runtimes: list[runtime.Tokentrail]) -> Iterator[Callable[[], runtime.Tokentrail]]:
    """A new "process": configure() as an application does, on a fixed clock."""
    monkeypatch.setenv("TOKENTRAIL_BUDGET_REFRESH_SECONDS", "3600")
    made = runtimes

    def _start() -> runtime.Tokentrail:
        rt = tokentrail.configure(home=tt_home, project="shop", budgets=[HARD], prices=PRICES)
        rt.clock = lambda: T0
        made.append(rt)
        return rt

    yield _start


def store_lock(rt: runtime.Tokentrail) -> Any:
    path = rt.settings.embedded_path
    return exclusive(path.with_name(path.name + ".lock"), timeout=30)


def call(rt: runtime.Tokentrail, *, max_out: int = 100, out: int = 100) -> Decimal | None:
    """One model call as the integrations make it: reserve, the model, settle, end the span."""
    attrs = common.start_attributes(operation="chat", framework="test", attribution=SHOP, request_model="m-out")
    span = rt.tracer.start_span("chat m-out", kind=SpanKind.CLIENT, start_time=rt.now_ns(), attributes=attrs)
    res = common.budget_reserve(rt, SHOP, model="m-out", provider=None, prompt_tokens=0, max_output_tokens=max_out)
    when = datetime.fromtimestamp(rt.now_ns() / NS, tz=timezone.utc)
    cost = common.record_usage(span, rt.prices, Usage(output_tokens=out), model="m-out", provider=None, when=when)
    common.budget_settle(rt, res, cost)
    span.end(end_time=rt.now_ns())
    return cost.total_usd


def test_fresh_home_enforces_from_the_first_call_without_the_store(start: Any) -> None:
    rt = start()
    with store_lock(rt):  # no store read can happen while this is held
        m = rt.budgets
        assert call(rt) == Decimal("0.3")
        assert call(rt) == Decimal("0.3") and call(rt) == Decimal("0.3")
        with pytest.raises(BudgetExceeded):  # $0.90 spent: a $0.30 worst case does not fit
            call(rt)
        assert m.refreshes == 0
    assert m.refresh() and m.spent("hard") == Decimal("0.9")  # the store's figure, counted once


def test_new_process_counts_what_the_last_one_spent(start: Any, tt_home: Path) -> None:
    first = start()
    assert [call(first) for _ in range(3)] == [Decimal("0.3")] * 3
    first.shutdown()  # writes the snapshot; its spans go to the spool
    snap = snapshot.read(snapshot.path_for(tt_home))
    assert snap is not None
    ((_, spent),) = snap.budgets.values()
    assert spent == {(): 900_000_000}  # $0.90 in nano-dollars

    second = start()
    with store_lock(second):
        m = second.budgets
        with pytest.raises(BudgetExceeded) as e:  # the last process's $0.90 counts at once
            call(second)
        assert e.value.spent_usd == Decimal("0.9")
        assert call(second, max_out=33, out=33) == Decimal("0.099")  # what is left still fits
        assert m.refreshes == 0
    assert m.refresh() and m.spent("hard") == Decimal("0.999")  # the first process's $0.90 + $0.099


def test_without_a_snapshot_a_used_store_is_read_first(start: Any, tt_home: Path) -> None:
    first = start()
    assert call(first) == Decimal("0.3")
    first.shutdown()
    snapshot.path_for(tt_home).unlink()  # as before snapshots existed: nothing to go on
    second = start()
    assert call(second) == Decimal("0.3")
    assert second.budgets.refreshes == 1  # the first reserve waited for the store
    assert second.budgets.spent("hard") == Decimal("0.6")


def test_snapshot_of_another_period_or_budget_is_not_used(start: Any, tt_home: Path) -> None:
    first = start()
    call(first)
    first.shutdown()
    path = snapshot.path_for(tt_home)
    data = json.loads(path.read_text())
    (fp,) = data["budgets"]
    data["budgets"][fp]["window"] -= 1  # written in another month
    path.write_text(json.dumps(data))
    second = start()
    with store_lock(second):
        m = second.budgets
        assert call(second) == Decimal("0.3")  # the snapshot gives no floor for this month...
        # ...and the shared ledger still holds the first process's call: no store read needed
        assert m.spent("hard") == Decimal("0.6") and m.refreshes == 0
    second.shutdown()  # writes its own snapshot
    # a budget the snapshot does not know: the store is read first
    data["budgets"] = {"another": data["budgets"][fp]}
    path.write_text(json.dumps(data))
    assert snapshot.ColdStart(second.settings).snapshot is not None
    third = start()
    call(third)
    assert third.budgets.refreshes == 1


def test_price_memo_prices_a_new_process_without_genai_prices(tmp_path: Path) -> None:
    when = datetime(2026, 3, 18, 12, 0, tzinfo=timezone.utc)
    usage = Usage(input_tokens=250_000, output_tokens=2_000, cache_read_tokens=100_000)
    cases = [("gpt-4o", "openai"), ("gemini-2.5-pro", "gcp.gemini"), ("no-such-model-x", "openai")]
    book = PriceBook(memo_dir=tmp_path)
    expected = [book.cost(usage, model, provider, when) for model, provider in cases]
    assert expected[1].total_usd is not None  # a tiered price (above the 200k tier)
    code = textwrap.dedent(
        f"""
        import sys
        from datetime import datetime, timezone
        from tokentrail.pricing import PriceBook
        from tokentrail.usage import Usage
        book = PriceBook(memo_dir={str(tmp_path)!r})
        when = datetime(2026, 3, 18, 12, 0, tzinfo=timezone.utc)
        usage = Usage(input_tokens=250_000, output_tokens=2_000, cache_read_tokens=100_000)
        for model, provider in {cases!r}:
            c = book.cost(usage, model, provider, when)
            print(c.input_usd, c.output_usd, c.total_usd, c.status, c.source)
        print("genai_prices" in sys.modules)
        """
    )
    for _ in range(50):  # the memo is written from a background thread
        if (tmp_path / "cache" / "prices.json").exists() and len(json.loads((tmp_path / "cache" / "prices.json").read_text())["plans"]) == 3:
            break
        import time

        time.sleep(0.1)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout.split("\n")
    assert out[:3] == [f"{c.input_usd} {c.output_usd} {c.total_usd} {c.status} {c.source}" for c in expected]
    assert out[3] == "False"  # priced from the memo alone


TOKENS_PROBE = """
import json, sys, time
from tokentrail import tokens
texts = json.loads(sys.argv[1])
bounds = [tokens.count_tokens(t, "gpt-4o", bound=True) for t in texts]
assert "o200k_base" not in tokens._encoders  # the first call did not wait for the ranks
for _ in range(600):
    if "o200k_base" in tokens._encoders:
        break
    time.sleep(0.05)
exact = [tokens.count_tokens(t, "gpt-4o") for t in texts]
print(json.dumps([bounds, exact, [tokens.count_tokens(t, "gpt-4o", bound=True) for t in texts]]))
"""


def test_reservation_counts_bound_the_exact_count_until_the_tokenizer_loads() -> None:
    texts = ["hello world", "Grüße aus Köln, 東京 и Москва!", "x" * 500 + " 12345 67890", "a\n\n\tb  c" * 20, "🙂" * 7]
    out = subprocess.run(
        [sys.executable, "-c", TOKENS_PROBE, json.dumps(texts)], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    bounds, exact, later = json.loads(out)
    assert bounds == [len(t.encode("utf-8")) for t in texts]
    assert all(b >= e for b, e in zip(bounds, exact, strict=True))  # never below the exact count
    assert later == exact  # once loaded, reservations count exactly
