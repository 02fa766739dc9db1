"""Fuzz: model calls whose usage is garbage, through the real LangChain handler into the store.

Usage arrives in usage_metadata, llm_output (token_usage / usage), response_metadata and
generation_info, under OpenAI, Anthropic, Gemini, Bedrock, Ollama and LangChain key names, with
negative, huge, non-finite, text, bool, nested and missing values. Whatever comes: no exception
reaches the caller, every call is stored, no negative or absurd figure is stored, and the store
stays readable (no spool file refused).
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

import tokentrail
from tokentrail import runtime
from tokentrail import semconv as sc
from tokentrail.store import open_store, spool
from tokentrail.usage import MAX_COST_USD, MAX_TOKENS

CALLS = 5000

# every key name a provider's usage may use (see tokentrail/usage.py)
KEYS = {
    "openai": ["prompt_tokens", "completion_tokens", "total_tokens", "reasoning_tokens", "prompt_cache_hit_tokens"],
    "openai_details": ["cached_tokens", "reasoning_tokens", "cache_write_tokens"],
    "anthropic": ["input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"],
    "anthropic_ttl": ["ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"],
    "gemini": [
        "prompt_token_count", "candidates_token_count", "total_token_count", "thoughts_token_count",
        "cached_content_token_count", "promptTokenCount", "candidatesTokenCount", "totalTokenCount",
    ],
    "bedrock": ["inputTokens", "outputTokens", "totalTokens", "cacheReadInputTokens", "cacheWriteInputTokens"],
    "bedrock_invoke": ["inputTokenCount", "outputTokenCount"],
    "ollama": ["prompt_eval_count", "eval_count"],
    "langchain": ["input_tokens", "output_tokens", "total_tokens"],
    "langchain_details": ["cache_read", "cache_creation", "reasoning", "priority_cache_read", "flex_reasoning"],
}  # fmt: skip

# values a provider, a proxy or an old SDK has been seen to send, and worse
BAD = [
    -1, -5, -(10**6), MAX_TOKENS + 1, 10**15, 2**64, 10**30,
    math.inf, -math.inf, math.nan, 12.5, -0.0, 1e308, -3.0,
    "12", " 7 ", "-5", "inf", "NaN", "1e3", "1e400", "twelve", "", "0x10", "9" * 40,
    True, False, None, [1, 2], {"value": 3}, {}, Decimal("NaN"), Decimal("1E+40"), Decimal("7"),
]  # fmt: skip
COUNTS = st.one_of(st.integers(min_value=0, max_value=5000), st.sampled_from(BAD), st.integers(min_value=-(10**20), max_value=10**20))


def mapping(names: list[str], size: int = 4) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(names), COUNTS, max_size=size)


def nested(base: list[str], key: str, inner: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """A mapping of `base` keys, sometimes with a `key` holding a mapping of `inner` keys (or junk)."""
    return st.tuples(mapping(base), st.one_of(st.none(), mapping(inner, 2), COUNTS)).map(
        lambda t: t[0] if t[1] is None else {**t[0], key: t[1]}
    )


PAYLOAD = st.one_of(
    nested(KEYS["openai"], "prompt_tokens_details", KEYS["openai_details"]),
    nested(KEYS["openai"], "completion_tokens_details", KEYS["openai_details"]),
    nested(KEYS["anthropic"], "cache_creation", KEYS["anthropic_ttl"]),
    mapping(KEYS["gemini"]),
    mapping(KEYS["bedrock"]),
    mapping(KEYS["bedrock_invoke"], 2),
    mapping(KEYS["ollama"], 2),
    nested(KEYS["langchain"], "input_token_details", KEYS["langchain_details"]),
    nested(KEYS["langchain"], "output_token_details", KEYS["langchain_details"]),
    st.sampled_from([None, {}, [], "usage", 42]),
)

# where the payload rides, and a hint some readers use
PLACES = [
    ("usage_metadata", None),
    ("response_metadata", "token_usage"),
    ("response_metadata", "usage"),
    ("response_metadata", "amazon-bedrock-invocationMetrics"),
    ("response_metadata", None),  # Ollama: counts at the top level
    ("generation_info", None),
    ("llm_output", "token_usage"),
    ("llm_output", "usage"),
]


def _place(place: tuple[str, str | None], payload: Any, other: tuple[tuple[str, str | None], Any], hint: bool) -> dict[str, Any]:
    where: dict[str, Any] = {"usage_metadata": None, "response_metadata": None, "generation_info": None, "llm_output": None}
    for (field, key), value in (other, (place, payload)):  # usage in one or two places
        value = value if key is None else {key: value}
        if field != "usage_metadata" and not isinstance(value, dict):
            value = {"x": value}
        where[field] = value
    if hint and isinstance(where["response_metadata"], dict):
        where["response_metadata"]["model_provider"] = "anthropic"
    return where


# one drawn payload, tried in every place (with, sometimes, a second payload elsewhere):
# len(PLACES) calls per example keeps hypothesis' own cost per call low
CALLS_OF_ONE_EXAMPLE = st.tuples(
    PAYLOAD, st.tuples(st.sampled_from(PLACES), st.one_of(st.none(), PAYLOAD)), st.booleans()
).map(lambda t: [_place(place, t[0], t[1], t[2]) for place in PLACES])


class GarbageUsageModel(BaseChatModel):
    """Answers with whatever usage the test hands it, unvalidated, as a broken proxy would."""

    model_name: str = "gpt-4o"
    next: dict[str, Any] = {}

    @property
    def _llm_type(self) -> str:
        return "garbage-usage"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any) -> ChatResult:
        w = self.next
        msg = AIMessage(content="ok")
        gen = ChatGeneration(message=msg)
        # assigned after construction: pydantic does not validate assignments here
        msg.usage_metadata = w["usage_metadata"]
        msg.response_metadata = {**(w["response_metadata"] or {}), "model_name": self.model_name}
        gen.generation_info = w["generation_info"]
        return ChatResult(generations=[gen], llm_output=w["llm_output"])


def test_garbage_usage_never_breaks_the_call_nor_the_store(tt: runtime.Tokentrail) -> None:
    model = GarbageUsageModel()
    handler = tokentrail.langchain_handler()
    made = 0

    examples = -(-CALLS // len(PLACES))

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(CALLS_OF_ONE_EXAMPLE)
    def calls(wheres: list[dict[str, Any]]) -> None:
        nonlocal made
        for where in wheres:
            model.next = where
            assert model.invoke("hi", config={"callbacks": [handler]}).content == "ok"  # nothing reached the caller
            made += 1

    calls()
    assert made >= CALLS
    assert handler.open_runs == 0
    assert tt.flush()
    with open_store(tt.settings) as store:
        [(calls, max_in, max_out, max_cached, max_reasoning, min_cost, max_cost)] = store.rows(
            "SELECT count(), max(input_tokens), max(output_tokens), max(cache_read_tokens + cache_write_tokens), "
            "max(reasoning_tokens), min(cost_usd), max(cost_usd) FROM tokentrail.spans WHERE operation = 'chat'"
        )
        flagged = store.rows(
            f"SELECT attributes['{sc.USAGE_INVALID}'] FROM tokentrail.spans WHERE mapContains(attributes, '{sc.USAGE_INVALID}')"
        )
    assert calls == made  # every call stored, once
    # no absurd figure: each count at most MAX_TOKENS (a sum of three capped parts at most)
    assert max(max_in, max_out, max_reasoning) <= 3 * MAX_TOKENS and max_cached <= 2 * MAX_TOKENS
    assert min_cost is None or Decimal(0) <= min_cost <= max_cost <= MAX_COST_USD
    assert flagged, "some calls carried invalid counts: their spans say which"
    for (raw,) in flagged:
        assert all("=" in item for item in json.loads(raw))  # "key=raw value"
    # the store stays readable: nothing refused, nothing set aside, nothing waiting
    assert spool.rejected(tt.settings.spool_dir) == [] and spool.count(tt.settings.spool_dir) == 0


@pytest.mark.parametrize(
    ("where", "flag", "tokens"),
    [
        ({"usage_metadata": {"input_tokens": math.inf, "output_tokens": 5, "total_tokens": 5}}, "input_tokens=inf", (0, 5)),
        ({"llm_output": {"token_usage": {"prompt_tokens": -5, "completion_tokens": 7}}}, "prompt_tokens=-5", (0, 7)),
        ({"response_metadata": {"usage": {"inputTokens": "1e400", "outputTokens": 3}}}, "inputTokens='1e400'", (0, 3)),
        ({"generation_info": {"prompt_eval_count": 12, "eval_count": True}}, "eval_count=True", (12, 0)),
        ({"usage_metadata": {"input_tokens": 10**15, "output_tokens": 2, "total_tokens": 2}}, f"input_tokens={10**15}", (0, 2)),
        # nothing valid at all: the call is still stored (its tokens estimated) and flagged
        ({"llm_output": {"token_usage": {"prompt_tokens": "-5", "completion_tokens": math.nan}}}, "prompt_tokens='-5'", (0, 0)),
        ({"usage_metadata": "usage"}, None, None),
    ],
)
def test_the_span_says_which_value_was_dropped(
    tt: runtime.Tokentrail, where: dict[str, Any], flag: str | None, tokens: tuple[int, int] | None
) -> None:
    model = GarbageUsageModel()
    model.next = {"usage_metadata": None, "response_metadata": None, "generation_info": None, "llm_output": None, **where}
    model.invoke("hi", config={"callbacks": [tokentrail.langchain_handler()]})
    assert tt.flush()
    with open_store(tt.settings) as store:
        [(inp, out, raw)] = store.rows(
            f"SELECT input_tokens, output_tokens, attributes['{sc.USAGE_INVALID}'] FROM tokentrail.spans WHERE operation = 'chat'"
        )
    if flag is None:  # not a mapping at all: nothing to read, the tokens are estimated
        assert raw == "" and inp > 0
        return
    assert flag in json.loads(raw)
    assert (inp, out) == tokens
