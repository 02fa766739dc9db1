"""Drop to a cheaper model when a budget is hit.

A chain's model is `premium.with_fallbacks([cheap], exceptions_to_handle=(BudgetExceeded,))`.
tokentrail checks every call against the budget *before* the provider is called, reserving the
call's worst case (prompt tokens + max_tokens at the model's price). When the premium model's
worst case no longer fits, BudgetExceeded is raised before any money is spent, and LangChain
runs the cheap model instead. When even that does not fit, the chain raises BudgetExceeded.

Runs offline: the two chat models are fakes that answer with realistic token usage, priced
as gpt-4o and gpt-4o-mini by genai-prices. The store lives in a temporary directory.

    python examples/budget_fallback.py
"""

from __future__ import annotations

import tempfile
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate

import tokentrail
from tokentrail.store import open_store


class OfflineChat(BaseChatModel):
    """A stand-in for ChatOpenAI: no network, usage_metadata like the real thing."""

    model_name: str = "gpt-4o"
    max_tokens: int = 800
    answer_tokens: int = 600
    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "offline-chat"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        self.calls += 1
        prompt_tokens = sum(len(str(m.content)) for m in messages) // 4 + 3 * len(messages)
        usage = {"input_tokens": prompt_tokens, "output_tokens": self.answer_tokens, "total_tokens": prompt_tokens + self.answer_tokens}
        message = AIMessage(
            content=f"({self.model_name}) Here is a summary...",
            usage_metadata=usage,  # type: ignore[arg-type]
            response_metadata={"model_name": self.model_name},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])


def main() -> None:
    home = tempfile.mkdtemp(prefix="tokentrail-budget-example-")
    rt = tokentrail.configure(
        home=home,
        project="support-bot",
        budgets=[
            # 5 cents a day for the summariser feature; alert at half and at 90%
            tokentrail.Budget(
                name="summaries",
                limit_usd="0.05",
                period="day",
                scope={"feature": "summarise"},
                warn_at=(0.5, 0.9),
            )
        ],
    )
    premium = OfflineChat(model_name="gpt-4o")
    cheap = OfflineChat(model_name="gpt-4o-mini")
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You summarise support tickets in two sentences."), ("human", "{ticket}")]
    )
    chain = prompt | premium.with_fallbacks([cheap], exceptions_to_handle=(tokentrail.BudgetExceeded,))
    handler = tokentrail.langchain_handler(feature="summarise")

    budget = rt.budgets
    print(f"store: {home}")
    print(f"{'ticket':>6}  {'answered by':<12} {'spent so far':>12}")
    for i in range(1, 40):
        ticket = f"Ticket {i}: the customer cannot log in after resetting the password. " * 8
        try:
            answer = chain.invoke({"ticket": ticket}, config={"callbacks": [handler]})
        except tokentrail.BudgetExceeded as e:
            print(f"{i:>6}  {'(refused)':<12} {budget.spent('summaries'):>12.6f}  {e}")
            break
        print(f"{i:>6}  {answer.response_metadata['model_name']:<12} {budget.spent('summaries'):>12.6f}")

    print(f"\nprovider calls: gpt-4o {premium.calls}, gpt-4o-mini {cheap.calls}")
    tokentrail.flush()
    with open_store(rt.settings) as store:
        spent = store.rows("SELECT sum(cost_usd) FROM tokentrail.spans WHERE feature = 'summarise'")[0][0]
        print(f"spend in the store: ${spent} of $0.05")
        print("budget events (tokentrail.budget_events):")
        for event, n, last in store.rows(
            "SELECT event, count(), argMax(message, timestamp) FROM tokentrail.budget_events "
            "GROUP BY event ORDER BY min(timestamp)"
        ):
            print(f"  {event:<6} x{n:<3} last: {last}")
    tokentrail.shutdown()


if __name__ == "__main__":
    main()
