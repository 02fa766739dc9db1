"""Usage payloads of every supported provider, normalised into `Usage` (see the package docstring)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .model import MAX_TOKENS, Usage, collecting, count_or_none, note

__all__ = [
    "WRAPPER_KEYS",
    "as_mapping",
    "count_web_searches",
    "from_mapping",
    "from_usage_metadata",
    "one_hour_writes",
    "with_fees",
    "with_response_fees",
]

# -- reading raw values ----------------------------------------------------------------------


def as_mapping(obj: Any) -> Mapping[str, Any] | None:
    """A dict view of a usage payload: dicts as they are, pydantic models (openai's
    CompletionUsage, anthropic's Usage, google's UsageMetadata) via model_dump, other objects
    via their attributes."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj
    # pydantic models, then protobuf-ish / boto-ish objects
    for method in ("model_dump", "to_dict"):
        dump = getattr(obj, method, None)
        if callable(dump):
            try:
                dumped = dump()
            except Exception:  # a half-built model: fall back to its attributes
                dumped = None
            if isinstance(dumped, Mapping):
                return dumped
    try:
        attrs = vars(obj)
    except TypeError:
        return None
    return {k: v for k, v in attrs.items() if not k.startswith("_")}


def _int(value: Any, key: str = "count") -> int:
    """A count (see count_or_none); a value that is none is noted under `key` and read as 0."""
    if value is None:
        return 0
    if type(value) is int and 0 <= value <= MAX_TOKENS:  # the common case, fast
        return value
    n = count_or_none(value)
    if n is None:
        note(key, value)
        return 0
    return n


def _get(m: Mapping[str, Any], *keys: str) -> int:
    """The first present, non-null count among keys."""
    for k in keys:
        v = m.get(k)
        if v is not None:
            return _int(v, k)
    return 0


def _sub(m: Mapping[str, Any], *keys: str) -> Mapping[str, Any]:
    for k in keys:
        sub = as_mapping(m.get(k))
        if sub is not None:
            return sub
    return {}


def _has(m: Mapping[str, Any], *keys: str) -> bool:
    return any(k in m for k in keys)


def _make(
    input_tokens: int,
    output_tokens: int,
    cache_read: int = 0,
    cache_write: int = 0,
    reasoning: int = 0,
) -> Usage:
    # subsets can never exceed their whole: if a provider says so, trust the parts
    input_tokens = max(input_tokens, cache_read + cache_write)
    output_tokens = max(output_tokens, reasoning)
    return Usage(input_tokens, output_tokens, cache_read, cache_write, reasoning)


def _excludes(total: int | None, whole: int, part: int, other: int) -> bool | None:
    """Does `whole` exclude `part`? Decided by a reported total (= whole + other [+ part]):
    True / False when the total tells, None when it cannot."""
    if total is None or part == 0:
        return None
    if total == whole + other + part:
        return True
    if total == whole + other:
        return False
    return None


# -- provider shapes -------------------------------------------------------------------------

WRAPPER_KEYS = ("usage_metadata", "usageMetadata", "usage", "token_usage", "billed_units", "meta")


@collecting
def from_mapping(d: Mapping[str, Any] | Any, provider: str | None = None) -> Usage | None:
    """Normalise a raw usage payload (dict or object) of any supported provider.

    Detected shapes: LangChain ``usage_metadata``; OpenAI chat completions (and the
    OpenAI-compatible ones: Azure, Groq, Mistral, DeepSeek, xAI, Perplexity, LiteLLM); OpenAI
    responses; Anthropic; Gemini (snake or camel case); Bedrock Converse and Bedrock invocation
    metrics; Ollama; Cohere ``billed_units``. A body that wraps the usage (``{"usage": ...}``)
    is unwrapped. ``provider`` (an OTel provider name or a LangChain ``ls_provider``) settles
    the one ambiguous case: bare ``input_tokens``/``output_tokens`` from Anthropic, which
    exclude cache tokens. Returns None when no usage is found.
    """
    m = as_mapping(d)
    if not m:
        return None
    p = (provider or "").lower()

    # LangChain usage_metadata (singular "token" details): input includes cache tokens
    if _has(m, "input_token_details", "output_token_details"):
        return from_usage_metadata(m)
    # OpenAI chat completions and OpenAI-compatible APIs
    if _has(m, "prompt_tokens", "completion_tokens"):
        return _openai_chat(m, p)
    # Gemini / Vertex AI
    if _has(
        m,
        "prompt_token_count",
        "promptTokenCount",
        "candidates_token_count",
        "candidatesTokenCount",
        "total_token_count",
        "totalTokenCount",
    ):
        return _gemini(m)
    # Bedrock Converse: inputTokens excludes cacheRead/cacheWrite
    if _has(m, "inputTokens", "outputTokens"):
        return _bedrock(m)
    # Bedrock InvokeModel (langchain-aws response_metadata / headers)
    if _has(m, "inputTokenCount", "outputTokenCount"):
        return _make(_get(m, "inputTokenCount"), _get(m, "outputTokenCount"))
    # Ollama
    if _has(m, "prompt_eval_count", "eval_count"):
        return _make(_get(m, "prompt_eval_count"), _get(m, "eval_count"))
    if _has(m, "input_tokens", "output_tokens"):
        return _input_output(m, p)
    for key in WRAPPER_KEYS:
        inner = m.get(key)
        if inner is not None and inner is not d:
            found = from_mapping(inner, provider)
            if found is not None:
                return with_response_fees(found, m)
    return None


def _tiered(details: Mapping[str, Any], name: str) -> int:
    """A usage_metadata detail, also under its service-tier names: langchain-openai writes
    ``priority_cache_read`` / ``flex_reasoning`` instead of ``cache_read`` / ``reasoning`` for
    priority and flex requests."""
    suffix = "_" + name
    return sum(_int(v, k) for k, v in details.items() if k == name or (isinstance(k, str) and k.endswith(suffix)))


def from_usage_metadata(m: Mapping[str, Any]) -> Usage:
    itd = _sub(m, "input_token_details")
    otd = _sub(m, "output_token_details")
    cache_read = _tiered(itd, "cache_read")
    # langchain-anthropic splits cache writes by TTL and then zeroes `cache_creation`;
    # other producers may send both (same number): take the larger, never the sum of both
    by_ttl = _get(itd, "ephemeral_5m_input_tokens") + _get(itd, "ephemeral_1h_input_tokens")
    cache_write = max(_tiered(itd, "cache_creation"), by_ttl)
    reasoning = _tiered(otd, "reasoning")
    inp = _get(m, "input_tokens")
    out = _get(m, "output_tokens")
    total = m.get("total_tokens")
    total_i = _int(total, "total_tokens") if total is not None else None
    # usage_metadata input includes cache tokens by contract; an integration that got it wrong
    # shows itself by a total that only adds up with the cache tokens added
    if _excludes(total_i, inp, cache_read + cache_write, out):
        inp += cache_read + cache_write
    if _excludes(total_i, out, reasoning, inp):
        out += reasoning
    return with_fees(_make(inp, out, cache_read, cache_write, reasoning), m, _get(itd, "ephemeral_1h_input_tokens"))


def _openai_chat(m: Mapping[str, Any], p: str) -> Usage:
    ptd = _sub(m, "prompt_tokens_details")
    ctd = _sub(m, "completion_tokens_details")
    inp = _get(m, "prompt_tokens")
    out = _get(m, "completion_tokens")
    # cached_tokens (OpenAI, Azure, Groq, xAI); prompt_cache_hit_tokens (DeepSeek);
    # cache_read_input_tokens / cache_creation_input_tokens (LiteLLM, OpenRouter-style proxies)
    cache_read = _get(ptd, "cached_tokens") or _get(m, "prompt_cache_hit_tokens", "cache_read_input_tokens")
    cache_write = _get(ptd, "cache_write_tokens", "cache_creation_tokens") or _get(m, "cache_creation_input_tokens")
    reasoning = _get(ctd, "reasoning_tokens")
    total = m.get("total_tokens")
    total_i = _int(total, "total_tokens") if total is not None else None
    if reasoning:
        # OpenAI counts reasoning inside completion_tokens; xAI reports it beside them
        # (total = prompt + completion + reasoning)
        separate = _excludes(total_i, out, reasoning, inp)
        if separate is None:
            separate = reasoning > out or p in ("x_ai", "xai")
        if separate:
            out += reasoning
    # Perplexity: top-level reasoning_tokens, billed beside completion_tokens and left out
    # of its total_tokens, so the total cannot tell; they are always added
    extra = _get(m, "reasoning_tokens")
    if extra and not reasoning:
        reasoning = extra
        out += extra
    return _make(inp, out, cache_read, cache_write, reasoning)


def _gemini(m: Mapping[str, Any]) -> Usage:
    prompt = _get(m, "prompt_token_count", "promptTokenCount")
    tool_prompt = _get(m, "tool_use_prompt_token_count", "toolUsePromptTokenCount")
    candidates = _get(m, "candidates_token_count", "candidatesTokenCount")
    thoughts = _get(m, "thoughts_token_count", "thoughtsTokenCount")
    cached = _get(m, "cached_content_token_count", "cachedContentTokenCount")
    # prompt includes cached content; candidates exclude thoughts; tool-use prompt tokens are
    # billed as input but counted apart (total = prompt + tool_use + candidates + thoughts)
    return _make(prompt + tool_prompt, candidates + thoughts, cached, 0, thoughts)


def _bedrock(m: Mapping[str, Any]) -> Usage:
    inp = _get(m, "inputTokens")
    out = _get(m, "outputTokens")
    cache_read = _get(m, "cacheReadInputTokens")
    cache_write = _get(m, "cacheWriteInputTokens")
    total = m.get("totalTokens")
    total_i = _int(total, "totalTokens") if total is not None else None
    # AWS: inputTokens is the non-cached part; total = input + output + cacheRead + cacheWrite
    if _excludes(total_i, inp, cache_read + cache_write, out) is not False:
        inp += cache_read + cache_write
    return _make(inp, out, cache_read, cache_write)


def _input_output(m: Mapping[str, Any], p: str) -> Usage:
    """input_tokens/output_tokens: Anthropic (cache excluded), OpenAI responses and bare
    usage_metadata (cache included)."""
    inp = _get(m, "input_tokens")
    out = _get(m, "output_tokens")
    itd = _sub(m, "input_tokens_details")
    otd = _sub(m, "output_tokens_details")
    anthropic = _has(m, "cache_read_input_tokens", "cache_creation_input_tokens", "cache_creation")
    if not anthropic and p == "anthropic" and "total_tokens" not in m:
        anthropic = True  # bare Anthropic usage (LangChain usage_metadata always has a total)
    if not anthropic:
        if _has(m, "input_tokens_details", "output_tokens_details"):
            # OpenAI responses API: input includes cached, output includes reasoning
            return _make(
                inp,
                out,
                _get(itd, "cached_tokens"),
                _get(itd, "cache_write_tokens"),
                _get(otd, "reasoning_tokens"),
            )
        # bare usage_metadata (total_tokens, no details) and the like: nothing cached
        return _make(inp, out)
    cache_read = _get(m, "cache_read_input_tokens")
    cache_write = _get(m, "cache_creation_input_tokens")
    if not cache_write:
        cc = _sub(m, "cache_creation")
        cache_write = _get(cc, "ephemeral_5m_input_tokens") + _get(cc, "ephemeral_1h_input_tokens")
    # Anthropic: input_tokens excludes both cache reads and cache writes; output includes
    # thinking (output_tokens_details.thinking_tokens is a breakdown, not an addition)
    reasoning = _get(otd, "thinking_tokens", "reasoning_tokens")
    usage = _make(inp + cache_read + cache_write, out, cache_read, cache_write, reasoning)
    return with_fees(usage, m, one_hour_writes(m))


def with_fees(u: Usage, m: Mapping[str, Any], cache_write_1h: int = 0) -> Usage:
    """The fee fields a usage payload carries: the one-hour part of the cache writes, server
    tool calls (Anthropic's ``server_tool_use.web_search_requests``) and the service tier
    (Anthropic's ``usage.service_tier``: standard, priority, batch)."""
    searches = _get(_sub(m, "server_tool_use"), "web_search_requests")
    tier = _tier(m.get("service_tier"))
    if not (cache_write_1h or searches or tier):
        return u
    return replace(
        u,
        cache_write_1h_tokens=min(cache_write_1h, u.cache_write_tokens),
        web_search_requests=searches or u.web_search_requests,
        service_tier=tier or u.service_tier,
    )


# tiers billed at the standard price, whatever the provider calls them
_STANDARD_TIERS = frozenset({"", "standard", "default", "auto", "on_demand"})


def _tier(value: Any) -> str:
    """A service tier as reported ("flex", "priority", "batch"); "" for the standard one."""
    if not isinstance(value, str):
        return ""
    tier = value.strip().lower()
    return "" if tier in _STANDARD_TIERS or len(tier) > 32 else tier


def count_web_searches(output: Any) -> int:
    """Web searches a response made: OpenAI responses' ``web_search_call`` output items (also
    as LangChain content blocks), each billed as one search."""
    if not isinstance(output, (list, tuple)):
        return 0
    n = 0
    for item in output:
        kind = item.get("type") if isinstance(item, Mapping) else getattr(item, "type", None)
        if kind == "web_search_call":
            n += 1
    return n


def with_response_fees(u: Usage | None, body: Any) -> Usage | None:
    """`u` with the fees a response body reports beside its usage: OpenAI's top-level
    ``service_tier`` and its responses' ``web_search_call`` output items."""
    if u is None or body is None:
        return u
    get = body.get if isinstance(body, Mapping) else (lambda k: getattr(body, k, None))
    tier = _tier(get("service_tier"))
    searches = count_web_searches(get("output"))
    if not (tier and not u.service_tier) and not (searches and not u.web_search_requests):
        return u
    return replace(u, service_tier=u.service_tier or tier, web_search_requests=u.web_search_requests or searches)




def one_hour_writes(m: Mapping[str, Any]) -> int:
    """Anthropic's one-hour cache writes in a raw usage (``cache_creation.ephemeral_1h_input_tokens``)."""
    return _get(_sub(m, "cache_creation"), "ephemeral_1h_input_tokens")
