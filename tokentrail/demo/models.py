"""Offline chat models that answer like real providers: usage in each provider's own shape.

`DemoChatModel` is a real LangChain `BaseChatModel`: callbacks, streaming, tool binding and
`ls_provider` / `ls_model_name` work as with ChatOpenAI or ChatAnthropic. It reports usage the
way the real integrations do (FIELD-NOTES): OpenAI counts cached prompt tokens inside
`input_tokens` and reasoning inside `output_tokens`; Anthropic's raw usage excludes cache reads
and writes from `input_tokens`, which langchain-anthropic adds back in `usage_metadata`;
Gemini and Ollama report plain counts. Prompt caches are simulated per provider: Anthropic
caches a `cache_control` system prompt for five minutes (a write, then reads), OpenAI caches any
prompt prefix of 1,024+ tokens automatically, in 128-token steps.

Latency is simulated on the `DemoClock`, not slept: a demo of two weeks runs in seconds.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    SystemMessage,
    ToolCall,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from pydantic import ConfigDict, Field

from .clock import DemoClock


# -- provider errors (named like the SDKs' exceptions: error.type shows these names) ---------
class DemoProviderError(Exception):
    status_code = 500


class RateLimitError(DemoProviderError):
    status_code = 429


class APITimeoutError(DemoProviderError):
    status_code = 408


class InternalServerError(DemoProviderError):
    status_code = 500


class OverloadedError(DemoProviderError):  # Anthropic's 529
    status_code = 529


@dataclass
class Simulator:
    """What the demo's models share: randomness, the clock, prompt caches, counters."""

    rng: random.Random
    clock: DemoClock
    model_calls: int = 0
    failed_calls: int = 0
    _caches: dict[str, int] = field(default_factory=dict)  # cache key -> last use (ns)

    def cache_lookup(self, key: str, ttl_s: float) -> bool:
        """Whether `key` is cached now; (re)writes it either way, as providers do on use."""
        now = self.clock()
        last = self._caches.get(key)
        self._caches[key] = now
        return last is not None and 0 <= now - last <= ttl_s * 1e9


@dataclass(frozen=True)
class Reply:
    """What a model says: text, or tool calls (with optional text)."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


Responder = Callable[[Sequence[BaseMessage], dict[str, Any], random.Random], Reply]


def count_tokens(text: str) -> int:
    """~4 characters a token, like tiktoken on English prose."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


def message_text(m: BaseMessage) -> str:
    c = m.content
    if isinstance(c, str):
        text = c
    else:
        text = " ".join(p if isinstance(p, str) else str(p.get("text", "")) for p in c)
    if isinstance(m, AIMessage) and m.tool_calls:
        text += json.dumps([tc["args"] for tc in m.tool_calls])
    return text


def filler(rng: random.Random, tokens: int, sentences: Sequence[str]) -> str:
    """About `tokens` tokens of text made from `sentences`."""
    out: list[str] = []
    size = 0
    while size < tokens * 4:
        s = rng.choice(sentences)
        out.append(s)
        size += len(s) + 1
    return " ".join(out)


_GENERIC = (
    "Thanks for the details, here is what I found.",
    "The short answer is yes, with one caveat.",
    "Based on the information above, the recommended next step is to check the settings page.",
    "Let me summarise the key points.",
    "This usually happens when the account has not been verified yet.",
    "If that does not help, our team can take a closer look.",
    "The change takes effect within a few minutes.",
    "You can find the full steps in the help centre.",
)


class DemoChatModel(BaseChatModel):
    """An offline chat model of a given provider and model name (see the module docstring)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: str
    provider: str  # LangChain ls_provider: openai, anthropic, google_genai, ollama
    response_model: str = ""  # the dated id the provider answers with
    temperature: float | None = None
    max_tokens: int | None = None
    output_tokens: tuple[int, int] = (80, 400)
    reasoning_tokens: tuple[int, int] | None = None  # o-series: hidden reasoning
    prompt_caching: bool = False  # Anthropic: cache_control on the system prompt
    fail_rate: float = 0.0
    ms_per_token: float = 12.0
    ttft_ms: float = 400.0
    sim: Simulator = Field(exclude=True, repr=False)
    responder: Responder | None = Field(default=None, exclude=True, repr=False)

    # -- LangChain plumbing ----------------------------------------------------------------
    @property
    def _llm_type(self) -> str:
        return f"{self.provider}-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider=self.provider,
            ls_model_name=kwargs.get("model", self.model),
            ls_model_type="chat",
            ls_temperature=kwargs.get("temperature", self.temperature),
        )
        max_tokens = kwargs.get("max_tokens", self.max_tokens)
        if max_tokens:
            params["ls_max_tokens"] = max_tokens
        if stop:
            params["ls_stop"] = stop
        return params

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | Any],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        from langchain_core.utils.function_calling import convert_to_openai_tool

        if tool_choice:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    # -- one simulated call ----------------------------------------------------------------
    def _call(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> tuple[Reply, dict[str, Any]]:
        sim, rng = self.sim, self.sim.rng
        sim.model_calls += 1
        if self.fail_rate and rng.random() < self.fail_rate:
            sim.failed_calls += 1
            sim.clock.advance(rng.uniform(80, 900) if rng.random() < 0.8 else 30_000)
            err = rng.choices(
                [RateLimitError, APITimeoutError, InternalServerError, OverloadedError],
                weights=[6, 2, 1, 2 if self.provider == "anthropic" else 0],
            )[0]
            raise err(f"{err.__name__}: the provider refused the request (simulated)")

        reply = self.responder(messages, kwargs, rng) if self.responder else None
        if reply is None:
            lo, hi = self.output_tokens
            reply = Reply(filler(rng, rng.randint(lo, hi), _GENERIC))
        prompt = sum(count_tokens(message_text(m)) + 4 for m in messages) + 3
        prompt += 80 * len(kwargs.get("tools") or ())  # each tool's JSON schema
        system = "".join(message_text(m) for m in messages if isinstance(m, SystemMessage))
        prefix = count_tokens(system)
        out = count_tokens(reply.text) + sum(
            count_tokens(json.dumps(tc["args"])) + 10 for tc in reply.tool_calls
        )
        reasoning = rng.randint(*self.reasoning_tokens) if self.reasoning_tokens else 0
        cache_read = cache_write = 0
        # the cache is keyed on the exact prefix (a str key: hashlib would release the GIL and
        # make the demo wait on the exporter thread)
        key = f"{self.model}\x00{system}"
        if self.provider == "anthropic" and self.prompt_caching and prefix >= 1024:
            if sim.cache_lookup(key, ttl_s=300):
                cache_read = prefix
            else:
                cache_write = prefix
        elif self.provider == "openai" and prefix >= 1024 and sim.cache_lookup(key, ttl_s=600):
            cache_read = prefix // 128 * 128
        sim.clock.advance(self.ttft_ms * rng.uniform(0.6, 1.8) + prompt * 0.01 * (0.3 if cache_read else 1.0))
        sim.clock.advance(reasoning * self.ms_per_token * 0.7)
        return reply, {
            "prompt": prompt,
            "output": out,
            "reasoning": reasoning,
            "cache_read": cache_read,
            "cache_write": cache_write,
        }

    def _usage(self, u: dict[str, Any]) -> UsageMetadata:
        total_in, out = u["prompt"], u["output"] + u["reasoning"]
        # langchain-core imports NotRequired from typing (3.11+): at python_version 3.10 mypy reads its optional keys as required
        meta = UsageMetadata(input_tokens=total_in, output_tokens=out, total_tokens=total_in + out)  # type: ignore[typeddict-item]
        if self.provider == "openai":
            meta["input_token_details"] = {"audio": 0, "cache_read": u["cache_read"]}
            meta["output_token_details"] = {"audio": 0, "reasoning": u["reasoning"]}
        elif self.provider == "anthropic":
            meta["input_token_details"] = {"cache_read": u["cache_read"], "cache_creation": u["cache_write"]}
        return meta

    def _raw_usage(self, u: dict[str, Any]) -> dict[str, Any]:
        """The usage block as the provider's API sends it."""
        out = u["output"] + u["reasoning"]
        if self.provider == "openai":
            return {
                "prompt_tokens": u["prompt"],
                "completion_tokens": out,
                "total_tokens": u["prompt"] + out,
                "prompt_tokens_details": {"cached_tokens": u["cache_read"], "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": u["reasoning"], "audio_tokens": 0},
            }
        if self.provider == "anthropic":
            # Anthropic's input_tokens EXCLUDES cache reads and writes
            return {
                "input_tokens": u["prompt"] - u["cache_read"] - u["cache_write"],
                "output_tokens": out,
                "cache_read_input_tokens": u["cache_read"],
                "cache_creation_input_tokens": u["cache_write"],
            }
        if self.provider == "ollama":
            return {"prompt_eval_count": u["prompt"], "eval_count": out}
        return {"prompt_token_count": u["prompt"], "candidates_token_count": out, "total_token_count": u["prompt"] + out}

    def _metadata(self, reply: Reply, u: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """(response_metadata, llm_output) shaped like the provider's LangChain integration."""
        model = self.response_model or self.model
        tools = bool(reply.tool_calls)
        raw = self._raw_usage(u)
        if self.provider == "openai":
            fp = "fp_" + hashlib.sha1(model.encode()).hexdigest()[:10]  # short input: keeps the GIL
            meta: dict[str, Any] = {
                "token_usage": raw,
                "model_name": model,
                "system_fingerprint": fp,
                "finish_reason": "tool_calls" if tools else "stop",
                "model_provider": "openai",
            }
            return meta, {"token_usage": raw, "model_name": model, "system_fingerprint": fp}
        if self.provider == "anthropic":
            msg_id = f"msg_{uuid.UUID(int=self.sim.rng.getrandbits(128)).hex[:24]}"
            stop = "tool_use" if tools else "end_turn"
            meta = {"id": msg_id, "model": model, "model_name": model, "stop_reason": stop, "usage": raw, "model_provider": "anthropic"}
            return meta, {"id": msg_id, "model": model, "stop_reason": stop, "usage": raw}
        if self.provider == "ollama":
            meta = {"model": model, "model_name": model, "done": True, "done_reason": "stop", **raw, "model_provider": "ollama"}
            return meta, None
        return {"model_name": model, "finish_reason": "STOP", "model_provider": "google_genai"}, None

    def _message(self, reply: Reply, u: dict[str, Any]) -> AIMessage:
        meta, _ = self._metadata(reply, u)
        return AIMessage(
            content=reply.text,
            tool_calls=list(reply.tool_calls),
            usage_metadata=self._usage(u),
            response_metadata=meta,
            id=f"run-{uuid.UUID(int=self.sim.rng.getrandbits(128))}",
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        reply, u = self._call(messages, kwargs)
        self.sim.clock.advance(u["output"] * self.ms_per_token * self.sim.rng.uniform(0.8, 1.3))
        message = self._message(reply, u)
        _, llm_output = self._metadata(reply, u)
        return ChatResult(generations=[ChatGeneration(message=message)], llm_output=llm_output)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        reply, u = self._call(messages, kwargs)
        # a few words a chunk: providers send ~1 token per chunk, but every chunk costs a trip
        # through LangChain's callbacks, and the demo is about spend, not chunk counts
        words = reply.text.split(" ")
        pieces = [" ".join(words[i : i + 8]) for i in range(0, len(words), 8)]
        per_chunk_ms = self.ms_per_token * max(1, u["output"]) / max(1, len(pieces))
        meta, _ = self._metadata(reply, u)
        usage = self._usage(u)
        if self.provider == "anthropic":
            # message_start carries the input side, message_delta the output (LangChain sums them)
            first = AIMessageChunk(
                content="",
                # langchain-core imports NotRequired from typing (3.11+): at python_version 3.10 mypy reads its optional keys as required
                usage_metadata=UsageMetadata(  # type: ignore[typeddict-item]
                    input_tokens=usage["input_tokens"],
                    output_tokens=0,
                    total_tokens=usage["input_tokens"],
                    input_token_details=usage.get("input_token_details", {}),
                ),
            )
            yield ChatGenerationChunk(message=first)
        for i, piece in enumerate(pieces):
            text = piece if i == 0 else " " + piece
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
            if run_manager:
                run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk
            self.sim.clock.advance(per_chunk_ms * self.sim.rng.uniform(0.7, 1.4))
        if self.provider == "anthropic":
            # langchain-core imports NotRequired from typing (3.11+): at python_version 3.10 mypy reads its optional keys as required
            last_usage = UsageMetadata(input_tokens=0, output_tokens=usage["output_tokens"], total_tokens=usage["output_tokens"])  # type: ignore[typeddict-item]
        else:  # OpenAI with include_usage: one last chunk with no choices and the usage
            last_usage = usage
        last = AIMessageChunk(content="", usage_metadata=last_usage, response_metadata=meta, chunk_position="last")
        yield ChatGenerationChunk(message=last)
