"""Usage normalisation: real provider bodies in, OTel semantics out, nothing counted twice."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, Generation, LLMResult

from tokentrail import semconv as sc
from tokentrail.instrumentation.langchain.readers import (
    from_langchain_message,
    from_langchain_result,
    is_langchain_cache_hit,
)
from tokentrail.usage import Usage, from_mapping, usage_attributes

# -- raw provider bodies (field names and shapes as the APIs send them) ----------------------

OPENAI_CHAT = {  # o-series chat completion with a prompt-cache hit and reasoning
    "prompt_tokens": 2006,
    "completion_tokens": 300,
    "total_tokens": 2306,
    "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 192,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
OPENAI_CHAT_USAGE = Usage(2006, 300, cache_read_tokens=1920, reasoning_tokens=192)

OPENAI_RESPONSES = {
    "input_tokens": 1500,
    "input_tokens_details": {"cached_tokens": 1024, "cache_write_tokens": 0},
    "output_tokens": 700,
    "output_tokens_details": {"reasoning_tokens": 512},
    "total_tokens": 2200,
}
OPENAI_RESPONSES_USAGE = Usage(1500, 700, cache_read_tokens=1024, reasoning_tokens=512)

ANTHROPIC_CACHE_WRITE = {  # first call: the system prompt is written to the cache
    "input_tokens": 21,
    "cache_creation_input_tokens": 188086,
    "cache_read_input_tokens": 0,
    "cache_creation": {"ephemeral_5m_input_tokens": 188086, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 393,
    "service_tier": "standard",
    "server_tool_use": None,
}
ANTHROPIC_CACHE_READ = {  # second call: the prefix is read back
    "input_tokens": 50,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 188086,
    "output_tokens": 412,
    "service_tier": "standard",
}

GEMINI = {  # gemini-2.5 with thinking and an explicit cache
    "prompt_token_count": 12000,
    "candidates_token_count": 450,
    "thoughts_token_count": 1200,
    "cached_content_token_count": 8000,
    "total_token_count": 13650,
}
GEMINI_USAGE = Usage(12000, 1650, cache_read_tokens=8000, reasoning_tokens=1200)

BEDROCK_CONVERSE = {  # inputTokens excludes the cache; totalTokens = all four
    "inputTokens": 30,
    "outputTokens": 250,
    "totalTokens": 3280,
    "cacheReadInputTokens": 3000,
    "cacheWriteInputTokens": 0,
}

OLLAMA = {
    "model": "llama3.1",
    "created_at": "2025-06-01T12:00:00.000Z",
    "done": True,
    "done_reason": "stop",
    "total_duration": 5191566416,
    "load_duration": 2154458,
    "prompt_eval_count": 26,
    "prompt_eval_duration": 383809000,
    "eval_count": 298,
    "eval_duration": 4799921000,
}


# -- Usage -----------------------------------------------------------------------------------


def test_usage_add_and_empty() -> None:
    a = Usage(10, 5, 2, 1, 3)
    b = Usage(1, 1, estimated=True)
    assert a + b == Usage(11, 6, 2, 1, 3, estimated=True)
    assert (a + Usage()).estimated is False
    assert Usage().is_empty and not a.is_empty
    assert Usage(estimated=True).is_empty


def test_usage_attributes_use_semconv_names() -> None:
    attrs = usage_attributes(OPENAI_CHAT_USAGE)
    assert attrs == {
        sc.GEN_AI_USAGE_INPUT_TOKENS: 2006,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: 300,
        sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: 1920,
        sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: 192,
    }
    full = usage_attributes(Usage(10, 5, 1, 2, 3, estimated=True))
    assert full[sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS] == 2
    assert full[sc.USAGE_ESTIMATED] is True


# -- raw bodies ------------------------------------------------------------------------------


def test_openai_chat_cached_and_reasoning_are_subsets() -> None:
    assert from_mapping(OPENAI_CHAT) == OPENAI_CHAT_USAGE


def test_openai_sdk_object() -> None:
    from openai.types import CompletionUsage

    obj = CompletionUsage.model_validate(OPENAI_CHAT)
    assert from_mapping(obj) == OPENAI_CHAT_USAGE


def test_openai_responses_api() -> None:
    assert from_mapping(OPENAI_RESPONSES) == OPENAI_RESPONSES_USAGE
    from openai.types.responses import ResponseUsage

    assert from_mapping(ResponseUsage.model_validate(OPENAI_RESPONSES)) == OPENAI_RESPONSES_USAGE


def test_anthropic_adds_cache_tokens_to_input() -> None:
    assert from_mapping(ANTHROPIC_CACHE_WRITE) == Usage(188107, 393, cache_write_tokens=188086)
    assert from_mapping(ANTHROPIC_CACHE_READ) == Usage(188136, 412, cache_read_tokens=188086)


def test_anthropic_sdk_object() -> None:
    from anthropic.types import Usage as AnthropicUsage

    obj = AnthropicUsage.model_validate(ANTHROPIC_CACHE_READ)
    assert from_mapping(obj) == Usage(188136, 412, cache_read_tokens=188086)


def test_anthropic_bare_counts_need_the_provider_hint() -> None:
    # no cache keys at all: only the provider says these are Anthropic's (same numbers anyway)
    assert from_mapping({"input_tokens": 10, "output_tokens": 3}, "anthropic") == Usage(10, 3)
    # cache writes split by TTL only
    body = {"input_tokens": 5, "output_tokens": 1, "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 20}}
    assert from_mapping(body) == Usage(125, 1, cache_write_tokens=120, cache_write_1h_tokens=20)


def test_gemini_output_adds_thoughts() -> None:
    assert from_mapping(GEMINI) == GEMINI_USAGE
    camel = {
        "promptTokenCount": 12000,
        "candidatesTokenCount": 450,
        "thoughtsTokenCount": 1200,
        "cachedContentTokenCount": 8000,
        "totalTokenCount": 13650,
    }
    assert from_mapping(camel) == GEMINI_USAGE
    # a REST body wrapping it
    assert from_mapping({"candidates": [], "usageMetadata": camel, "modelVersion": "gemini-2.5-pro"}) == GEMINI_USAGE


def test_bedrock_converse_adds_cache_tokens_to_input() -> None:
    assert from_mapping(BEDROCK_CONVERSE) == Usage(3030, 250, cache_read_tokens=3000)
    # written to the cache, no total reported: AWS semantics (input excludes cache) apply
    body = {"inputTokens": 12, "outputTokens": 40, "cacheWriteInputTokens": 2048}
    assert from_mapping(body) == Usage(2060, 40, cache_write_tokens=2048)


def test_ollama_counts() -> None:
    assert from_mapping(OLLAMA) == Usage(26, 298)


def test_xai_reasoning_reported_beside_completion() -> None:
    # xAI: total = prompt + completion + reasoning
    body = {
        "prompt_tokens": 10120,
        "completion_tokens": 1499,
        "total_tokens": 14428,
        "prompt_tokens_details": {"cached_tokens": 128},
        "completion_tokens_details": {"reasoning_tokens": 2809},
    }
    assert from_mapping(body) == Usage(10120, 4308, cache_read_tokens=128, reasoning_tokens=2809)


def test_deepseek_cache_hit_tokens() -> None:
    body = {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_cache_hit_tokens": 1024,
        "prompt_cache_miss_tokens": 176,
        "completion_tokens_details": {"reasoning_tokens": 120},
    }
    assert from_mapping(body) == Usage(1200, 300, cache_read_tokens=1024, reasoning_tokens=120)


def test_nothing_recognisable_is_none() -> None:
    assert from_mapping({}) is None
    assert from_mapping({"model": "x", "id": "y"}) is None
    assert from_mapping(None) is None


# -- LangChain messages ----------------------------------------------------------------------


def test_langchain_openai_usage_metadata_matches_raw() -> None:
    from langchain_openai.chat_models.base import _create_usage_metadata

    um = _create_usage_metadata(OPENAI_CHAT)
    msg = AIMessage("hi", usage_metadata=um, response_metadata={"token_usage": OPENAI_CHAT, "model_provider": "openai"})
    assert from_langchain_message(msg) == OPENAI_CHAT_USAGE


def test_langchain_openai_priority_tier_details() -> None:
    from langchain_openai.chat_models.base import _create_usage_metadata

    um = _create_usage_metadata(OPENAI_CHAT, service_tier="priority")
    assert "priority_cache_read" in um["input_token_details"]
    assert from_langchain_message(AIMessage("hi", usage_metadata=um)) == OPENAI_CHAT_USAGE


def test_anthropic_via_langchain_counts_cache_once() -> None:
    """usage_metadata already holds the cache tokens in input_tokens and response_metadata
    holds Anthropic's raw usage: the message is read once, from usage_metadata."""
    from anthropic.types import Usage as AnthropicUsage
    from langchain_anthropic.chat_models import _create_usage_metadata

    raw = AnthropicUsage.model_validate(ANTHROPIC_CACHE_WRITE)
    um = _create_usage_metadata(raw)
    assert um["input_tokens"] == 188107  # langchain-anthropic added the cache tokens itself
    msg = AIMessage(
        "done",
        usage_metadata=um,
        response_metadata={
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "model": "claude-sonnet-4-5-20250929",
            "model_name": "claude-sonnet-4-5-20250929",
            "model_provider": "anthropic",
            "stop_reason": "end_turn",
            "usage": ANTHROPIC_CACHE_WRITE,
        },
    )
    expected = Usage(188107, 393, cache_write_tokens=188086)
    assert from_langchain_message(msg) == expected
    # the raw usage alone, with the hint, gives the same numbers
    assert from_mapping(msg.response_metadata["usage"], "anthropic") == expected


def test_langchain_anthropic_ttl_split_cache_writes() -> None:
    um: Any = {
        "input_tokens": 1525,
        "output_tokens": 10,
        "total_tokens": 1535,
        "input_token_details": {
            "cache_read": 0,
            "cache_creation": 0,
            "ephemeral_5m_input_tokens": 1000,
            "ephemeral_1h_input_tokens": 500,
        },
    }
    assert from_langchain_message(AIMessage("x", usage_metadata=um)) == Usage(1525, 10, cache_write_tokens=1500, cache_write_1h_tokens=500)


def test_message_without_usage_metadata_falls_back_to_response_metadata() -> None:
    ollama = AIMessage("x", response_metadata={**OLLAMA, "model_name": "llama3.1"})
    assert from_langchain_message(ollama) == Usage(26, 298)
    bedrock = AIMessage("x", response_metadata={"usage": BEDROCK_CONVERSE, "stopReason": "end_turn"})
    assert from_langchain_message(bedrock) == Usage(3030, 250, cache_read_tokens=3000)
    anthropic = AIMessage("x", response_metadata={"usage": ANTHROPIC_CACHE_READ, "model_provider": "anthropic"})
    assert from_langchain_message(anthropic) == Usage(188136, 412, cache_read_tokens=188086)
    assert from_langchain_message(AIMessage("x")) is None


# -- LangChain results -----------------------------------------------------------------------


def _um(inp: int, out: int, cached: int = 0) -> Any:
    return {
        "input_tokens": inp,
        "output_tokens": out,
        "total_tokens": inp + out,
        "input_token_details": {"cache_read": cached},
    }


def test_n_generations_of_one_prompt_count_once() -> None:
    # ChatOpenAI(n=3): one request, its usage copied onto every generation's message
    um = _um(120, 90, cached=64)
    gens = [ChatGeneration(message=AIMessage(f"answer {i}", usage_metadata=um)) for i in range(3)]
    result = LLMResult(
        generations=[gens],
        llm_output={"token_usage": {"prompt_tokens": 120, "completion_tokens": 90, "total_tokens": 210}, "model_name": "gpt-4o"},
    )
    assert from_langchain_result(result) == Usage(120, 90, cache_read_tokens=64)


def test_prompts_are_summed() -> None:
    result = LLMResult(
        generations=[
            [ChatGeneration(message=AIMessage("a", usage_metadata=_um(100, 10)))],
            [ChatGeneration(message=AIMessage("b", usage_metadata=_um(200, 20, cached=50)))],
        ],
        llm_output={"token_usage": {"prompt_tokens": 300, "completion_tokens": 30}},
    )
    assert from_langchain_result(result) == Usage(300, 30, cache_read_tokens=50)


def test_differing_generations_of_one_prompt_are_summed() -> None:
    gens = [
        ChatGeneration(message=AIMessage("a", usage_metadata=_um(100, 10))),
        ChatGeneration(message=AIMessage("b", usage_metadata=_um(100, 17))),
    ]
    assert from_langchain_result(LLMResult(generations=[gens])) == Usage(200, 27)


def test_streamed_result_has_usage_only_on_the_message() -> None:
    chunk = AIMessageChunk(content="streamed", usage_metadata=_um(40, 12))
    result = LLMResult(generations=[[ChatGenerationChunk(message=chunk)]], llm_output=None)
    assert from_langchain_result(result) == Usage(40, 12)


def test_llm_output_fallbacks() -> None:
    openai = LLMResult(
        generations=[[ChatGeneration(message=AIMessage("x"))]],
        llm_output={"token_usage": OPENAI_CHAT, "model_name": "o3-mini"},
    )
    assert from_langchain_result(openai) == OPENAI_CHAT_USAGE
    anthropic = LLMResult(
        generations=[[ChatGeneration(message=AIMessage("x"))]],
        llm_output={"id": "msg_1", "model": "claude-3-5-haiku-latest", "usage": ANTHROPIC_CACHE_WRITE},
    )
    assert from_langchain_result(anthropic) == Usage(188107, 393, cache_write_tokens=188086)


def test_generation_info_fallback() -> None:
    ollama_llm = LLMResult(generations=[[Generation(text="x", generation_info=OLLAMA)]])
    assert from_langchain_result(ollama_llm) == Usage(26, 298)
    gemini_legacy = LLMResult(generations=[[Generation(text="x", generation_info={"usage_metadata": GEMINI})]])
    assert from_langchain_result(gemini_legacy) == GEMINI_USAGE


def test_no_usage_anywhere_is_none() -> None:
    assert from_langchain_result(LLMResult(generations=[[ChatGeneration(message=AIMessage("x"))]])) is None
    assert from_langchain_result(LLMResult(generations=[])) is None


def test_langchain_cache_hit_is_detected() -> None:
    """Drive a real chat model through langchain-core's LLM cache: the second call's result
    keeps the original counts, marked with total_cost 0."""
    from langchain_core.caches import InMemoryCache
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.outputs import ChatResult

    class Counting(BaseChatModel):
        @property
        def _llm_type(self) -> str:
            return "counting"

        def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
            msg = AIMessage("cached answer", usage_metadata=_um(30, 7))
            return ChatResult(generations=[ChatGeneration(message=msg)])

    seen: list[tuple[bool, Usage | None]] = []

    class Capture(BaseCallbackHandler):
        def on_llm_end(self, response: LLMResult, **kwargs: Any) -> None:
            # read it now: langchain-core later rewrites the cached generation objects in place
            seen.append((is_langchain_cache_hit(response), from_langchain_result(response)))

    model = Counting(cache=InMemoryCache())
    model.invoke("q", config={"callbacks": [Capture()]})
    model.invoke("q", config={"callbacks": [Capture()]})
    # the hit keeps the counts: billing them is the caller's decision (a hit costs nothing)
    assert seen == [(False, Usage(30, 7)), (True, Usage(30, 7))]


@pytest.mark.parametrize("bad", [{"prompt_tokens": None, "completion_tokens": "12"}, {"prompt_tokens": -5, "completion_tokens": 3.0}])
def test_junk_values_do_not_raise(bad: dict[str, Any]) -> None:
    u = from_mapping(bad)
    assert u is not None and u.input_tokens == 0 and u.output_tokens in (3, 12)
