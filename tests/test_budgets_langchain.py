"""Budgets through the real LangChain handler: blocked before the model runs, fallbacks, the example."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from clocks import FixedClock
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate

import tokentrail
from tokentrail import Budget, BudgetExceeded, runtime, testing
from tokentrail.store import open_store

ROOT = Path(__file__).resolve().parent.parent
# input is free, output $3000 per million: a 100-token answer costs exactly $0.30
PRICES = {"priced-fake": {"input_per_mtok": 0, "output_per_mtok": 3000}, "cheap-fake": {"input_per_mtok": 0, "output_per_mtok": 30}}


class PricedFake(BaseChatModel):
    """An offline chat model whose answers carry usage_metadata: 100 output tokens each."""

    model_name: str = "priced-fake"
    max_tokens: int = 100
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "priced-fake"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any) -> ChatResult:
        self.calls += 1
        usage = {"input_tokens": 12, "output_tokens": self.max_tokens, "total_tokens": 12 + self.max_tokens}
        msg = AIMessage(content="ok", usage_metadata=usage, response_metadata={"model_name": self.model_name})  # type: ignore[arg-type]
        return ChatResult(generations=[ChatGeneration(message=msg)])


@pytest.fixture
def rt(tt_home: Path, monkeypatch: pytest.MonkeyPatch, clock: FixedClock) -> Iterator[runtime.Tokentrail]:
    clock.step_ns = 1_000_000  # a day budget: the calls happen on the fixed clock's day, 1 ms apart
    monkeypatch.setenv("TOKENTRAIL_BUDGET_REFRESH_SECONDS", "3600")
    inst = tokentrail.configure(
        home=tt_home, project="shop", prices=PRICES, budgets=[Budget(name="hard", limit_usd="1.00", period="day")]
    )
    yield inst
    inst.shutdown()
    testing.reset()


def test_hard_budget_blocks_the_call_before_the_model_runs(rt: runtime.Tokentrail) -> None:
    model = PricedFake()
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | model
    handler = tokentrail.langchain_handler(user_id="alice")
    for _ in range(3):
        chain.invoke({"q": "hello"}, config={"callbacks": [handler]})
    with pytest.raises(BudgetExceeded) as e:
        chain.invoke({"q": "hello"}, config={"callbacks": [handler]})
    assert model.calls == 3  # the 4th call never reached the provider
    assert (e.value.budget, e.value.spent_usd, e.value.limit_usd, e.value.estimated_cost_usd) == (
        "hard", Decimal("0.9"), Decimal("1.00"), Decimal("0.3")
    )
    assert handler.open_runs == 0
    rt.flush()
    with open_store(rt.settings) as store:
        spans = store.rows(
            "SELECT cost_usd, status, error_type FROM tokentrail.spans WHERE operation = 'chat' ORDER BY timestamp"
        )
        events = store.rows("SELECT event, budget, spent_usd, estimated_cost_usd FROM tokentrail.budget_events WHERE event = 'block'")
    assert spans == [(Decimal("0.3"), "ok", "")] * 3 + [(None, "error", "BudgetExceeded")]
    assert events == [("block", "hard", Decimal("0.9"), Decimal("0.3"))]
    assert rt.budgets.refresh()
    assert rt.budgets.spent("hard") == Decimal("0.9")


def test_fallback_to_a_cheaper_model(rt: runtime.Tokentrail) -> None:
    premium, cheap = PricedFake(), PricedFake(model_name="cheap-fake")
    chain = premium.with_fallbacks([cheap], exceptions_to_handle=(BudgetExceeded,))
    handler = tokentrail.langchain_handler()
    answered = [chain.invoke("q", config={"callbacks": [handler]}).response_metadata["model_name"] for _ in range(5)]
    assert answered == ["priced-fake"] * 3 + ["cheap-fake"] * 2
    assert (premium.calls, cheap.calls) == (3, 2)
    assert rt.budgets.spent("hard") == Decimal("0.906")


def test_async_calls_share_the_budget(rt: runtime.Tokentrail) -> None:
    model = PricedFake()
    handler = tokentrail.langchain_handler()

    async def one() -> bool:
        try:
            await model.ainvoke("q", config={"callbacks": [handler]})
            return True
        except BudgetExceeded:
            return False

    async def main() -> list[bool]:
        return await asyncio.gather(*(one() for _ in range(12)))

    assert sum(asyncio.run(main())) == 3
    assert model.calls == 3
    assert rt.budgets.spent("hard") == Decimal("0.9")


def test_budget_fallback_example_runs() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "budget_fallback.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    answered = [ln.split()[1] for ln in lines if ln.strip()[:1].isdigit()]
    # premium first, then the cheap model, then refused: in that order, each at least once
    assert answered[0] == "gpt-4o" and "gpt-4o-mini" in answered and answered[-1] == "(refused)"
    assert answered.index("gpt-4o-mini") > answered.index("gpt-4o")
    assert "exceeded" in lines[[i for i, ln in enumerate(lines) if "(refused)" in ln][0]]
    assert any(ln.strip().startswith("block") for ln in lines)
