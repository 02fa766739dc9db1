"""What tokentrail reads from LangChain objects: the usage of an LLMResult or AIMessage, the
attribution a run's metadata and tags carry, and LangChain cache hits. LangChain objects are
read by duck typing (nothing here imports langchain_core); the provider payloads inside them are
normalised by tokentrail.usage."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from ... import context as attribution_context
from ...context import EMPTY, Attribution
from ...usage import Usage, count_web_searches, from_mapping, with_response_fees
from ...usage.model import collecting
from ...usage.shapes import (
    WRAPPER_KEYS,
    as_mapping,
    from_usage_metadata,
    one_hour_writes,
    with_fees,
)

__all__ = ["attribution_of", "from_langchain_message", "from_langchain_result", "is_langchain_cache_hit"]


# -- usage -------------------------------------------------------------------------------------


def _provider_hint(response_metadata: Mapping[str, Any] | None) -> str | None:
    if response_metadata:
        hint = response_metadata.get("model_provider") or response_metadata.get("ls_provider")
        if isinstance(hint, str):
            return hint
    return None


@collecting
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
        m = as_mapping(um)
        if m is not None:
            found = from_usage_metadata(m)
            if not found.is_empty:
                return _message_fees(found, msg, rm)
    if rm:
        for key in ("token_usage", "usage", "usage_metadata", "amazon-bedrock-invocationMetrics"):
            if rm.get(key):
                other = from_mapping(rm[key], hint)
                if other is not None:
                    return _message_fees(other if (found is None or not other.is_empty) else found, msg, rm)
        # Ollama (prompt_eval_count/eval_count) and others put counts at the top level
        other = from_mapping({k: v for k, v in rm.items() if k not in WRAPPER_KEYS}, hint)
        if other is not None:
            return other if (found is None or not other.is_empty) else found
    return found


def _message_fees(u: Usage, msg: Any, rm: Mapping[str, Any] | None) -> Usage:
    """Fees LangChain leaves out of usage_metadata: the raw usage in response_metadata
    (langchain-anthropic: ``usage.server_tool_use``, ``usage.service_tier``), the response's
    ``service_tier`` (langchain-openai), web_search_call blocks (OpenAI responses)."""
    if rm:
        raw = as_mapping(rm.get("usage"))
        if raw:
            u = with_fees(u, raw, u.cache_write_1h_tokens or one_hour_writes(raw))
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


@collecting
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


# -- attribution -------------------------------------------------------------------------------

def attribution_of(metadata: Mapping[str, Any] | None, tags: Iterable[str] | None) -> Attribution:
    """Attribution carried on a LangChain run: metadata keys named like the fields, and tags."""
    kw: dict[str, Any] = {}
    if metadata:
        for name in attribution_context.FIELDS:
            if name == "tags":
                continue
            v = metadata.get(name) or metadata.get(f"tokentrail_{name}")
            if v:
                kw[name] = str(v)
        # LangChain / Langfuse conventions for the same ideas
        if "user_id" not in kw and metadata.get("langfuse_user_id"):
            kw["user_id"] = str(metadata["langfuse_user_id"])
        if "session_id" not in kw:
            for key in ("langfuse_session_id", "thread_id", "conversation_id"):
                if metadata.get(key):
                    kw["session_id"] = str(metadata[key])
                    break
    if tags:
        # LangChain adds its own "seq:step:N" tags to runs in a sequence: not the user's.
        user_tags = tuple(t for t in tags if not t.startswith("seq:step:"))
        if user_tags:
            kw["tags"] = user_tags
    return Attribution(**kw) if kw else EMPTY
