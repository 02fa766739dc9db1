"""tokentrail with LangChain: one handler, then spend by user from SQL.

Runs offline: `FakeChat` stands in for ChatOpenAI and answers with realistic usage. With a key,
use `ChatOpenAI(model="gpt-4o-mini")` instead; nothing else changes.

    python examples/langchain_quickstart.py
"""

from __future__ import annotations

import tempfile
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.prompts import ChatPromptTemplate

import tokentrail
from tokentrail.store import open_store


class FakeChat(BaseChatModel):
    """Offline stand-in for ChatOpenAI(model="gpt-4o-mini")."""

    model_name: str = "gpt-4o-mini"

    @property
    def _llm_type(self) -> str:
        return "fake-openai"

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        return {"ls_provider": "openai", "ls_model_name": self.model_name, "ls_model_type": "chat"}

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
        usage = {"input_tokens": 1200, "output_tokens": 150, "total_tokens": 1350,
                 "input_token_details": {"cache_read": 1024}}
        msg = AIMessage(content="A short answer.", usage_metadata=usage,  # type: ignore[arg-type]
                        response_metadata={"model_name": "gpt-4o-mini-2024-07-18"})
        return ChatResult(generations=[ChatGeneration(message=msg)])


def main() -> None:
    home = tempfile.mkdtemp(prefix="tokentrail-quickstart-")
    tokentrail.configure(home=home, project="quickstart")  # omit home= for ~/.tokentrail

    chain = ChatPromptTemplate.from_template("Answer briefly: {q}") | FakeChat() | StrOutputParser()
    for user in ("alice", "bob", "alice"):
        handler = tokentrail.langchain_handler(user_id=user, feature="faq")
        chain.invoke({"q": "What is tokentrail?"}, config={"callbacks": [handler]})

    tokentrail.flush()
    with open_store(tokentrail.get().settings) as store:
        for user, calls, tokens, cost in store.rows(
            "SELECT user_id, count(), sum(input_tokens + output_tokens), sum(cost_usd) "
            "FROM tokentrail.spans WHERE operation = 'chat' GROUP BY user_id ORDER BY user_id"
        ):
            print(f"{user:<6} calls={calls} tokens={tokens} cost=${cost}")
    tokentrail.shutdown()


if __name__ == "__main__":
    main()
