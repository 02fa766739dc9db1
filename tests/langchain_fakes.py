"""Offline LangChain models for tests: real BaseChatModel subclasses, scripted answers.

`UsageChatModel` answers like a provider integration does: an AIMessage with usage_metadata and
response_metadata["model_name"], `ls_provider` / `ls_model_name` in its LangSmith params, a
streamed answer whose last chunk carries the usage. Knobs: fail (raise on the next N calls),
delay (sleep in the async paths, for cancellations), usage=None (a provider that reports none).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.chat_models import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from opentelemetry import trace
from pydantic import PrivateAttr

DEFAULT_USAGE: dict[str, Any] = {
    "input_tokens": 1000,
    "output_tokens": 100,
    "total_tokens": 1100,
    "input_token_details": {"cache_read": 500},
}


class UsageChatModel(BaseChatModel):
    model_name: str = "gpt-4o"
    response_model: str | None = "gpt-4o-2024-08-06"
    provider: str = "openai"
    text: str = "Hello there, friend"
    usage: dict[str, Any] | None = DEFAULT_USAGE
    fail: int = 0  # raise on this many calls, then answer
    delay: float = 0.0
    sync_delay: float = 0.0
    _calls: int = PrivateAttr(default=0)
    _seen_spans: list[Any] = PrivateAttr(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "usage-fake-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = self.provider
        params["ls_model_name"] = self.model_name
        return params

    @property
    def seen_spans(self) -> list[Any]:
        """The OTel span current inside each call: the model span when instrumented."""
        return self._seen_spans

    def _answer(self) -> AIMessage:
        self._calls += 1
        self._seen_spans.append(trace.get_current_span())
        if self._calls <= self.fail:
            raise ConnectionError(f"provider unavailable (call {self._calls})")
        meta = {"model_name": self.response_model} if self.response_model else {}
        return AIMessage(self.text, usage_metadata=self.usage, response_metadata=meta)  # type: ignore[arg-type]

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.sync_delay:
            time.sleep(self.sync_delay)
        return ChatResult(generations=[ChatGeneration(message=self._answer())])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.delay:
            await asyncio.sleep(self.delay)
        return ChatResult(generations=[ChatGeneration(message=self._answer())])

    def _chunks(self, message: AIMessage) -> list[ChatGenerationChunk]:
        words = str(message.content).split(" ")
        chunks = [
            ChatGenerationChunk(message=AIMessageChunk(content=(w if i == 0 else " " + w)))
            for i, w in enumerate(words)
        ]
        # usage and model on the last chunk, as providers stream them
        chunks.append(
            ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    usage_metadata=message.usage_metadata,
                    response_metadata=message.response_metadata,
                )
            )
        )
        return chunks

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        # langchain-core's stream() reports each chunk to on_llm_new_token itself
        yield from self._chunks(self._answer())

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._chunks(self._answer()):
            if self.delay:
                await asyncio.sleep(self.delay)
            yield chunk


# -- an in-memory view of the spans (for tests that need span objects, not stored rows) -----
