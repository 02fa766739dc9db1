"""LlamaIndex test helpers: an Anthropic LLM over the real anthropic SDK, failing and probing
LLMs, OpenAI tool-call bodies, and an in-memory span exporter.

llama-index-llms-anthropic 0.12 cannot build requests with anthropic>=2 (its MessageParam use
fails), so `Anthropic` below does what that integration does, on the real SDK against the
loopback server: `chat` returns `raw=dict(message)`; `stream_chat` yields a chunk per content
delta and one for `message_delta`, each with `raw=dict(event)` (message_start is consumed
silently, as there), so the usage reaches tokentrail exactly as it would from the real class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anthropic
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.mock import MockLLM
from opentelemetry import trace
from pydantic import Field, PrivateAttr


class Anthropic(CustomLLM):
    """What llama-index-llms-anthropic's `Anthropic` does for text, on the real SDK."""

    model: str = "claude-3-5-haiku-20241022"
    max_tokens: int = 512
    base_url: str = ""
    _client: Any = PrivateAttr()

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._client = anthropic.Anthropic(api_key="test", base_url=self.base_url, max_retries=0)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name=self.model, is_chat_model=True, num_output=self.max_tokens)

    def _params(self, messages: Sequence[ChatMessage]) -> dict[str, Any]:
        return {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "messages": [{"role": m.role.value, "content": m.content or ""} for m in messages if m.role != MessageRole.SYSTEM],
        }

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        response = self._client.messages.create(**self._params(messages))
        text = "".join(b.text for b in response.content if b.type == "text")
        return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), raw=dict(response))

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        stream = self._client.messages.create(stream=True, **self._params(messages))

        def gen() -> ChatResponseGen:
            text = ""
            usage: dict[str, Any] = {}
            input_tokens = None
            for r in stream:
                if r.type == "content_block_delta":
                    text += r.delta.text
                    yield ChatResponse(
                        message=ChatMessage(role=MessageRole.ASSISTANT, content=text, additional_kwargs={"usage": usage or None}),
                        delta=r.delta.text,
                        raw=dict(r),
                    )
                elif r.type == "message_start":
                    input_tokens = r.message.usage.input_tokens
                    usage = {"input_tokens": input_tokens, "output_tokens": r.message.usage.output_tokens}
                elif r.type == "message_delta":
                    r.usage.input_tokens = r.usage.input_tokens or input_tokens
                    usage = {"input_tokens": r.usage.input_tokens, "output_tokens": r.usage.output_tokens}
                    yield ChatResponse(
                        message=ChatMessage(role=MessageRole.ASSISTANT, content=text, additional_kwargs={"usage": usage}),
                        delta="",
                        raw=dict(r),
                    )

        return gen()

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        r = self.chat([ChatMessage(role=MessageRole.USER, content=prompt)], **kwargs)
        return CompletionResponse(text=r.message.content or "", raw=r.raw)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        raise NotImplementedError


class FailingLLM(MockLLM):
    """MockLLM that raises for prompts containing "fail" (before any token)."""

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        if "fail" in prompt:
            raise RuntimeError("provider said no")
        return super().complete(prompt, formatted=formatted, **kwargs)


class ProbeLLM(CustomLLM):
    """Records the OpenTelemetry span current while it runs (what a provider SDK's own
    instrumentation would nest under) and reports OpenAI-shaped usage."""

    seen: list[Any] = Field(default_factory=list)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="gpt-4o-mini")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.seen.append(trace.get_current_span())
        raw = {"model": "gpt-4o-mini-2024-07-18", "usage": {"prompt_tokens": 30, "completion_tokens": 5, "total_tokens": 35}}
        return CompletionResponse(text="ok", raw=raw)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        raise NotImplementedError


def openai_tool_call_body(name: str, arguments: str, *, model: str = "gpt-4o-mini-2024-07-18", prompt_tokens: int = 80, completion_tokens: int = 12) -> dict[str, Any]:
    """A /v1/chat/completions body asking for one tool call."""
    return {
        "id": "chatcmpl-tool1",
        "object": "chat.completion",
        "created": 1_741_569_952,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "refusal": None,
                    "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }
