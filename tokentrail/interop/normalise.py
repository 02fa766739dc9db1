"""Usage, model and provider read from other instrumentations' GenAI span attributes.

Three families are recognised:

- OpenInference (`openinference.span.kind`, `llm.token_count.*`, `llm.model_name`, `llm.provider`);
- OpenLLMetry / traceloop (`traceloop.*`, `llm.usage.*`, `gen_ai.usage.prompt_tokens` /
  `completion_tokens`, its cache attributes `gen_ai.usage.cache_read_input_tokens` ...);
- OpenTelemetry genai (`gen_ai.operation.name`, `gen_ai.usage.input_tokens` ...).

Usage comes out with tokentrail's semantics (usage.py): input includes cache reads and writes,
output includes reasoning, each counted once. The conventions say the details are subsets; an
instrumentation that reports them apart (Anthropic's way: its input leaves the cache out) is
told by its total, or by a subset larger than the whole, and the missing part is added once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .. import semconv as sc
from ..usage import MAX_TOKENS, Usage, count_or_none, raw_text

OPENINFERENCE = "openinference"
OPENLLMETRY = "openllmetry"
OTEL_GENAI = "otel-genai"

_OI_MODEL_KINDS = frozenset({"LLM", "EMBEDDING"})
_MODEL_OPS = frozenset({"chat", "text_completion", "embeddings", "generate_content", "completion", "embedding"})

_INPUT = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.usage.prompt_tokens")
_OUTPUT = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens", "llm.usage.completion_tokens")
_TOTAL = ("gen_ai.usage.total_tokens", "llm.usage.total_tokens")
_CACHE_READ = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.usage.cache_read_input_tokens",
)
_CACHE_WRITE = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_write.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.usage.cache_creation_input_tokens",
)
_REASONING = (
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "llm.usage.reasoning_tokens",
)
_OTHER_KEYS = (_INPUT, _OUTPUT, _TOTAL, _CACHE_READ, _CACHE_WRITE, _REASONING)


def family(attrs: Mapping[str, Any]) -> str | None:
    """Which instrumentation made a span, by its attributes (None: not a GenAI span)."""
    if "openinference.span.kind" in attrs:
        return OPENINFERENCE
    has_genai = False
    for key in attrs:
        if key.startswith(("traceloop.", "llm.usage.", "llm.request.type")):
            return OPENLLMETRY
        if key.startswith("gen_ai."):
            has_genai = True
    return OTEL_GENAI if has_genai else None


def is_model_call(attrs: Mapping[str, Any]) -> bool:
    """A model call (chat, completion, embeddings), not a chain, tool or agent step."""
    kind = attrs.get("openinference.span.kind")
    if kind is not None:
        return str(kind).upper() in _OI_MODEL_KINDS
    op = attrs.get(sc.GEN_AI_OPERATION_NAME) or attrs.get("llm.request.type")
    if op is not None:
        return str(op) in _MODEL_OPS
    return any(k in attrs for k in _INPUT + _OUTPUT)


def operation(attrs: Mapping[str, Any]) -> str:
    kind = str(attrs.get("openinference.span.kind", "")).upper()
    if kind == "EMBEDDING":
        return sc.OP_EMBEDDINGS
    op = str(attrs.get(sc.GEN_AI_OPERATION_NAME) or attrs.get("llm.request.type") or "chat")
    return {"completion": sc.OP_TEXT_COMPLETION, "embedding": sc.OP_EMBEDDINGS, "generate_content": sc.OP_CHAT}.get(op, op)


def _first(attrs: Mapping[str, Any], keys: tuple[str, ...], bad: list[str]) -> int | None:
    for key in keys:
        value = attrs.get(key)
        if value is not None:
            if type(value) is int and 0 <= value <= MAX_TOKENS:  # the common case, checked inline
                return value
            n = count_or_none(value)
            if n is None:
                bad.append(f"{key}={raw_text(value)}")
                return 0
            return n
    return None


_OI_KEYS = (
    ("llm.token_count.prompt",), ("llm.token_count.completion",), ("llm.token_count.total",),
    ("llm.token_count.prompt_details.cache_read",), ("llm.token_count.prompt_details.cache_write",),
    ("llm.token_count.completion_details.reasoning",),
)  # fmt: skip


def usage(attrs: Mapping[str, Any], fam: str) -> Usage | None:
    """The span's usage, or None when it reports none."""
    bad: list[str] = []
    k_in, k_out, k_total, k_cr, k_cw, k_rs = _OI_KEYS if fam == OPENINFERENCE else _OTHER_KEYS
    inp = _first(attrs, k_in, bad)
    out = _first(attrs, k_out, bad)
    total = _first(attrs, k_total, bad)
    cr = _first(attrs, k_cr, bad) or 0
    cw = _first(attrs, k_cw, bad) or 0
    rs = _first(attrs, k_rs, bad) or 0
    if inp is None and out is None and not bad:
        return None
    inp, out = inp or 0, out or 0
    # details reported apart from their whole: add them once
    if total is not None and total != inp + out:
        if cr + cw and total == inp + cr + cw + out:
            inp += cr + cw
        elif rs and total == inp + out + rs:
            out += rs
        elif rs and cr + cw and total == inp + cr + cw + out + rs:
            inp, out = inp + cr + cw, out + rs
    if cr + cw > inp:
        inp += cr + cw
    if rs > out:
        out += rs
    return Usage(inp, out, cr, cw, rs, invalid=tuple(bad))


def _invocation_model(attrs: Mapping[str, Any]) -> str | None:
    raw = attrs.get("llm.invocation_parameters")
    if not isinstance(raw, str) or not raw.startswith("{"):
        return None
    try:
        params = json.loads(raw)
    except ValueError:
        return None
    model = params.get("model") or params.get("model_name") if isinstance(params, dict) else None
    return str(model) if model else None


def models(attrs: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(request model, response model)."""
    request = attrs.get(sc.GEN_AI_REQUEST_MODEL) or _invocation_model(attrs)
    response = attrs.get(sc.GEN_AI_RESPONSE_MODEL) or attrs.get("llm.model_name")
    request = str(request) if request else None
    response = str(response) if response else None
    return request or response, response


def provider(attrs: Mapping[str, Any]) -> str | None:
    for key in (sc.GEN_AI_PROVIDER_NAME, "gen_ai.system", "llm.provider", "llm.system"):
        value = attrs.get(key)
        if value:
            return str(value).lower()
    return None


_USER_KEYS = (sc.USER_ID, "traceloop.association.properties.user_id", "langfuse.user.id", "enduser.id")
_SESSION_KEYS = (
    sc.SESSION_ID,
    sc.GEN_AI_CONVERSATION_ID,
    "traceloop.association.properties.session_id",
    "langfuse.session.id",
)


def attribution(attrs: Mapping[str, Any]) -> dict[str, str]:
    """user_id and session_id the span itself carries."""
    out: dict[str, str] = {}
    for name, keys in (("user_id", _USER_KEYS), ("session_id", _SESSION_KEYS)):
        for key in keys:
            value = attrs.get(key)
            if value:
                out[name] = str(value)
                break
    return out
