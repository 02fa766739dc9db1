"""Token usage, normalised from whatever a provider or framework reports.

One `Usage` shape for every provider, with OTel GenAI semantics:

- ``input_tokens`` includes cached tokens (cache reads and cache writes),
- ``output_tokens`` includes reasoning tokens,
- ``cache_read_tokens``, ``cache_write_tokens`` and ``reasoning_tokens`` are subsets of those.

Providers disagree about what their counts include (Anthropic and Bedrock leave cache tokens
out of their input count, Gemini and xAI leave reasoning out of their output count). Each
reader below adds what its provider leaves out, so nothing is counted twice or lost. Where a
``total`` is reported it is used to tell the two conventions apart.

Values are made safe here, where they enter: a count that is negative, non-finite, not a number
(a bool, a nested object, text) or absurd (above MAX_TOKENS) is dropped to 0, and the Usage lists
it in ``invalid`` ("key=raw value"), which becomes the span attribute ``tokentrail.usage.invalid``.
Costs are bounded to what the store's Decimal(18, 9) columns hold (``cost_or_none``).

No framework is imported here: LangChain objects are read by duck typing.
"""

from __future__ import annotations

import functools
import math
import operator
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from . import semconv as sc

__all__ = [
    "MAX_COST_USD",
    "MAX_TOKENS",
    "Usage",
    "cost_or_none",
    "count_or_none",
    "count_web_searches",
    "from_langchain_message",
    "from_langchain_result",
    "from_mapping",
    "is_langchain_cache_hit",
    "usage_attributes",
    "with_response_fees",
]


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one model call (or a sum of calls)."""

    input_tokens: int = 0  # cached tokens INCLUDED (OTel gen_ai.usage.input_tokens semantics)
    output_tokens: int = 0  # reasoning tokens INCLUDED
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False  # True when a tokenizer counted, not the provider
    # counts the provider sent that were not counts ("prompt_tokens=-5"): dropped to 0
    invalid: tuple[str, ...] = ()
    # fees (issue 14): the part of cache_write_tokens written for one hour (Anthropic's
    # cache_creation.ephemeral_1h_input_tokens), server-side web searches (billed per search),
    # and the service tier the response reports ("flex", "priority", "batch"; "" = standard)
    cache_write_1h_tokens: int = 0
    web_search_requests: int = 0
    service_tier: str = ""

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens + other.reasoning_tokens,
            estimated=self.estimated or other.estimated,
            invalid=_merge(self.invalid, other.invalid),
            cache_write_1h_tokens=self.cache_write_1h_tokens + other.cache_write_1h_tokens,
            web_search_requests=self.web_search_requests + other.web_search_requests,
            service_tier=_tier_of_sum(self.service_tier, other.service_tier),
        )

    @property
    def is_empty(self) -> bool:
        """True when every count is zero (a cache hit, or a provider that reported nothing)."""
        return not (
            self.input_tokens
            or self.output_tokens
            or self.cache_read_tokens
            or self.cache_write_tokens
            or self.reasoning_tokens
            or self.web_search_requests
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def _tier_of_sum(a: str, b: str) -> str:
    return a if a == b or not b else b if not a else "mixed"


def usage_attributes(u: Usage) -> dict[str, int | bool | str | list[str]]:
    """Span attributes for a usage. Input and output are always set; the subsets and the
    estimated and invalid flags only when non-zero / true, to keep spans lean (a missing one
    reads as 0)."""
    attrs: dict[str, int | bool | str | list[str]] = {
        sc.GEN_AI_USAGE_INPUT_TOKENS: u.input_tokens,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: u.output_tokens,
    }
    if u.cache_read_tokens:
        attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = u.cache_read_tokens
    if u.cache_write_tokens:
        attrs[sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS] = u.cache_write_tokens
    if u.reasoning_tokens:
        attrs[sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = u.reasoning_tokens
    if u.cache_write_1h_tokens:
        attrs[sc.USAGE_CACHE_WRITE_1H_TOKENS] = u.cache_write_1h_tokens
    if u.web_search_requests:
        attrs[sc.USAGE_WEB_SEARCH_REQUESTS] = u.web_search_requests
    if u.service_tier:
        attrs[sc.SERVICE_TIER] = u.service_tier
    if u.estimated:
        attrs[sc.USAGE_ESTIMATED] = True
    if u.invalid:
        attrs[sc.USAGE_INVALID] = list(u.invalid)
    return attrs


# -- safe values -----------------------------------------------------------------------------

# More tokens than one call can bill (context windows hold ~1e6-1e7): a bigger count is a
# provider's or a proxy's bug, and priced it would put an absurd figure in the ledger.
MAX_TOKENS = 1_000_000_000
# the largest value the store's Decimal(18, 9) cost columns hold
MAX_COST_USD = Decimal("999999999.999999999")
_NANO = Decimal("1e-9")
_MAX_INVALID = 16  # flags kept per usage: enough to say what was wrong


def count_or_none(value: Any) -> int | None:
    """A token count as an int in [0, MAX_TOKENS]; None when `value` is not one (negative,
    non-finite, fractional, a bool, text that is no number, a nested object, or absurd).
    Integral floats and numeric strings ("12", "12.0", "1e3") are counts."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= MAX_TOKENS else None
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            return None
        return count_or_none(int(value))
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 32:  # no count needs 32 characters (and int() of a huge one is slow)
            return None
        try:
            return count_or_none(int(text))
        except ValueError:
            try:
                return count_or_none(float(text))
            except ValueError:
                return None
    if isinstance(value, Decimal):
        if not value.is_finite() or value != value.to_integral_value():
            return None
        return count_or_none(int(value))
    try:
        return count_or_none(operator.index(value))  # numpy integers and the like
    except TypeError:
        return None


def cost_or_none(value: Any) -> Decimal | None:
    """A cost in USD as a Decimal at 9 places that Decimal(18, 9) holds; None when `value` is
    not one (non-finite, not a number, beyond +-999,999,999.999999999)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value).strip())
        if not d.is_finite() or abs(d) > MAX_COST_USD:
            return None
        return d.quantize(_NANO)
    except (InvalidOperation, ValueError):
        return None


def raw_text(value: Any, limit: int = 100) -> str:
    """A raw value as kept beside its flag: its repr, cut short."""
    try:
        text = repr(value)
    except Exception:  # a broken __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# values dropped while one payload is read (see _collecting)
_invalid: ContextVar[list[str] | None] = ContextVar("tokentrail_usage_invalid", default=None)

F = TypeVar("F", bound=Callable[..., Any])


def _merge(a: tuple[str, ...], b: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*a, *b)))[:_MAX_INVALID]


def _note(key: str, value: Any) -> None:
    bucket = _invalid.get()
    if bucket is not None and len(bucket) < _MAX_INVALID:
        bucket.append(f"{key}={raw_text(value)}")


def _collecting(func: F) -> F:
    """The Usage `func` returns lists the values dropped while it read its payload (the
    outermost reader collects for the readers it calls)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _invalid.get() is not None:
            return func(*args, **kwargs)
        bucket: list[str] = []
        token = _invalid.set(bucket)
        try:
            usage = func(*args, **kwargs)
        finally:
            _invalid.reset(token)
        if bucket and isinstance(usage, Usage):
            usage = replace(usage, invalid=_merge(usage.invalid, bucket))
        return usage

    return wrapper  # type: ignore[return-value]


# -- reading raw values ----------------------------------------------------------------------


def _as_mapping(obj: Any) -> Mapping[str, Any] | None:
    """A dict view of a usage payload: dicts as they are, pydantic models (openai's
    CompletionUsage, anthropic's Usage, google's UsageMetadata) via model_dump, other objects
    via their attributes."""
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        try:
            dumped = dump()
        except Exception:  # a half-built model: fall back to its attributes
            dumped = None
        if isinstance(dumped, Mapping):
            return dumped
    to_dict = getattr(obj, "to_dict", None)  # protobuf-ish / boto-ish objects
    if callable(to_dict):
        try:
            dumped = to_dict()
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
        _note(key, value)
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
        sub = _as_mapping(m.get(k))
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

_WRAPPER_KEYS = ("usage_metadata", "usageMetadata", "usage", "token_usage", "billed_units", "meta")


@_collecting
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
    m = _as_mapping(d)
    if not m:
        return None
    p = (provider or "").lower()

    # LangChain usage_metadata (singular "token" details): input includes cache tokens
    if _has(m, "input_token_details", "output_token_details"):
        return _langchain(m)
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
    for key in _WRAPPER_KEYS:
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


def _langchain(m: Mapping[str, Any]) -> Usage:
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
    return _with_fees(_make(inp, out, cache_read, cache_write, reasoning), m, _get(itd, "ephemeral_1h_input_tokens"))


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
    return _with_fees(usage, m, _get(_sub(m, "cache_creation"), "ephemeral_1h_input_tokens"))


def _with_fees(u: Usage, m: Mapping[str, Any], cache_write_1h: int = 0) -> Usage:
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


# -- LangChain -------------------------------------------------------------------------------


def _provider_hint(response_metadata: Mapping[str, Any] | None) -> str | None:
    if response_metadata:
        hint = response_metadata.get("model_provider") or response_metadata.get("ls_provider")
        if isinstance(hint, str):
            return hint
    return None


@_collecting
def from_langchain_message(msg: Any) -> Usage | None:
    """Usage of an AIMessage / AIMessageChunk: its ``usage_metadata`` (the normalised,
    cache-inclusive one), else its ``response_metadata`` (``token_usage``, ``usage``, Ollama's
    counts, Bedrock's ``usage``). Never both: they describe the same call."""
    if msg is None:
        return None
    response_metadata = getattr(msg, "response_metadata", None)
    rm = response_metadata if isinstance(response_metadata, Mapping) else None
    hint = _provider_hint(rm)
    found: Usage | None = None
    um = getattr(msg, "usage_metadata", None)
    if um:
        m = _as_mapping(um)
        if m is not None:
            found = _langchain(m)
            if not found.is_empty:
                return _message_fees(found, msg, rm)
    if rm:
        for key in ("token_usage", "usage", "usage_metadata", "amazon-bedrock-invocationMetrics"):
            if rm.get(key):
                other = from_mapping(rm[key], hint)
                if other is not None:
                    return _message_fees(other if (found is None or not other.is_empty) else found, msg, rm)
        # Ollama (prompt_eval_count/eval_count) and others put counts at the top level
        other = from_mapping({k: v for k, v in rm.items() if k not in _WRAPPER_KEYS}, hint)
        if other is not None:
            return other if (found is None or not other.is_empty) else found
    return found


def _message_fees(u: Usage, msg: Any, rm: Mapping[str, Any] | None) -> Usage:
    """Fees LangChain leaves out of usage_metadata: the raw usage in response_metadata
    (langchain-anthropic: ``usage.server_tool_use``, ``usage.service_tier``), the response's
    ``service_tier`` (langchain-openai), web_search_call blocks (OpenAI responses)."""
    if rm:
        raw = _as_mapping(rm.get("usage"))
        if raw:
            u = _with_fees(u, raw, u.cache_write_1h_tokens or _get(_sub(raw, "cache_creation"), "ephemeral_1h_input_tokens"))
        u = with_response_fees(u, rm) or u
    if not u.web_search_requests:
        searches = count_web_searches(getattr(msg, "content", None))
        if not searches:
            extra = getattr(msg, "additional_kwargs", None)
            if isinstance(extra, Mapping):
                searches = count_web_searches(extra.get("tool_outputs"))
        if searches:
            u = replace(u, web_search_requests=searches)
    return u


def _gen_message_usage(gen: Any) -> Usage | None:
    msg = getattr(gen, "message", None)
    return from_langchain_message(msg) if msg is not None else None


def _gen_info_usage(gen: Any) -> Usage | None:
    info = getattr(gen, "generation_info", None)
    if not info or not isinstance(info, Mapping):
        return None
    return from_mapping(info)


def _per_prompt(usages: Iterable[Usage | None]) -> Usage | None:
    """Usage of one prompt's generations.

    Rule for n>1: a provider reports usage per request, and LangChain copies that same usage
    onto every generation of the request (langchain-openai does so for n>1). So when every
    generation of a prompt carries the same counts, they are one request's usage, counted once.
    When they differ, each generation was its own request and they are summed.
    """
    found = [u for u in usages if u is not None]
    if not found:
        return None
    first = found[0]
    if all(u == first for u in found[1:]):
        return first
    total = found[0]
    for u in found[1:]:
        total = total + u
    return total


def _sum(usages: Iterable[Usage | None]) -> Usage | None:
    total: Usage | None = None
    for u in usages:
        if u is not None:
            total = u if total is None else total + u
    return total


@_collecting
def from_langchain_result(result: Any) -> Usage | None:
    """Usage of a LangChain ``LLMResult`` (what ``on_llm_end`` receives).

    Preference: the generations' messages (``usage_metadata``, else ``response_metadata``),
    which is the only place a streamed call carries usage; else ``llm_output["token_usage"]``
    / ``["usage"]`` (already a total over the prompts); else each generation's
    ``generation_info`` (Ollama, legacy Gemini). ``generations`` is a list per prompt: prompts
    are summed; generations of one prompt follow the n>1 rule of ``_per_prompt``. Returns None
    when nothing reports usage.
    """
    if result is None:
        return None
    generations = getattr(result, "generations", None) or []
    llm_output = getattr(result, "llm_output", None)
    hint = None
    if isinstance(llm_output, Mapping):
        h = llm_output.get("model_provider") or llm_output.get("ls_provider")
        hint = h if isinstance(h, str) else None

    one = generations[0] if len(generations) == 1 else None
    if isinstance(one, (list, tuple)) and len(one) == 1:
        # one prompt, one generation (nearly every call): what the general path gives, once
        found = _gen_message_usage(one[0])
        if found is not None:
            return found
        prompts = [list(one)]
    else:
        prompts = [list(p) if isinstance(p, (list, tuple)) else [p] for p in generations]
        from_messages = [_per_prompt(_gen_message_usage(g) for g in gens) for gens in prompts]
        if any(u is not None for u in from_messages):
            # a prompt whose messages carry nothing may still have generation_info counts
            return _sum(
                u if u is not None else _per_prompt(_gen_info_usage(g) for g in gens)
                for u, gens in zip(from_messages, prompts, strict=True)
            )
    if isinstance(llm_output, Mapping):
        for key in ("token_usage", "usage"):
            if llm_output.get(key):
                found = from_mapping(llm_output[key], hint)
                if found is not None:
                    return found
    return _sum(_per_prompt(_gen_info_usage(g) for g in gens) for gens in prompts)


def is_langchain_cache_hit(obj: Any) -> bool:
    """True when LangChain answered from its LLM cache. langchain-core keeps the cached
    message's original counts but stamps ``usage_metadata["total_cost"] = 0`` on a hit, so the
    counts must not be billed again. Accepts an LLMResult, a ChatGeneration or a message."""
    generations = getattr(obj, "generations", None)
    if generations is not None:
        gens = [g for p in generations for g in (p if isinstance(p, (list, tuple)) else [p])]
        return bool(gens) and all(is_langchain_cache_hit(g) for g in gens)
    msg = getattr(obj, "message", obj)
    um = getattr(msg, "usage_metadata", None)
    if not isinstance(um, Mapping):
        return False
    cost = um.get("total_cost")
    return cost is not None and not isinstance(cost, bool) and cost == 0
