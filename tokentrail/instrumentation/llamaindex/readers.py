"""What tokentrail reads from LlamaIndex responses (ChatResponse / CompletionResponse): usage,
model, text, and the messages recorded with `capture_content=True`.

`response.raw` is whatever the integration got from its provider: llama-index-llms-openai puts
the OpenAI ChatCompletion (or, streaming, the ChatCompletionChunk) object there, sometimes a
dict; Anthropic's integration a dict of the Message or of the stream event. `additional_kwargs`
often repeats prompt/completion counts without the cache details, so `raw` comes first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ...tokens import text_of
from ...usage import Usage, from_mapping, with_response_fees
from .. import lifecycle

__all__ = [
    "estimate",
    "input_messages",
    "max_usage",
    "output_messages",
    "prompt_tokens",
    "raw_model",
    "raw_usage",
    "response_text",
    "response_usage",
]


def _get(obj: Any, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def raw_usage(raw: Any, provider: str | None) -> Usage | None:
    """Usage in a raw provider body or stream event: `usage` on it, or on its `message`
    (Anthropic's message_start event), or the body itself when it is a usage mapping."""
    if raw is None:
        return None
    usage = _get(raw, "usage")
    if usage is not None:
        # the response's service_tier and web_search_call items sit beside its usage
        return with_response_fees(from_mapping(usage, provider), raw)
    message = _get(raw, "message")
    if message is not None and not isinstance(message, str):
        usage = _get(message, "usage")
        if usage is not None:
            return from_mapping(usage, provider)
    if isinstance(raw, Mapping):
        # a bare usage-shaped dict (some integrations put the counts at the top level)
        return from_mapping({k: v for k, v in raw.items() if k not in ("choices", "content", "message")}, provider)
    return None


def response_usage(response: Any, provider: str | None) -> Usage | None:
    """Provider-reported usage of a ChatResponse / CompletionResponse, or None."""
    if response is None:
        return None
    found = raw_usage(getattr(response, "raw", None), provider)
    if found is not None:
        return found
    extra = getattr(response, "additional_kwargs", None)
    if isinstance(extra, Mapping) and extra:
        return from_mapping(extra, provider)
    return None


def raw_model(response: Any) -> str | None:
    """The model the provider says answered (`model` of the body, chunk or Anthropic message)."""
    raw = getattr(response, "raw", None)
    model = _get(raw, "model")
    if model is None:
        model = _get(_get(raw, "message"), "model")
    return model if isinstance(model, str) and model else None


def max_usage(a: Usage | None, b: Usage | None) -> Usage | None:
    """Field-wise maximum: stream events report usage cumulatively (Anthropic's message_start
    has the input, message_delta the running output), so the largest of each is the call's."""
    if a is None:
        return b
    if b is None:
        return a
    return Usage(
        input_tokens=max(a.input_tokens, b.input_tokens),
        output_tokens=max(a.output_tokens, b.output_tokens),
        cache_read_tokens=max(a.cache_read_tokens, b.cache_read_tokens),
        cache_write_tokens=max(a.cache_write_tokens, b.cache_write_tokens),
        reasoning_tokens=max(a.reasoning_tokens, b.reasoning_tokens),
        estimated=a.estimated and b.estimated,
        cache_write_1h_tokens=max(a.cache_write_1h_tokens, b.cache_write_1h_tokens),
        web_search_requests=max(a.web_search_requests, b.web_search_requests),
        service_tier=a.service_tier or b.service_tier,
    )


def response_text(response: Any) -> str:
    """The generated text: CompletionResponse.text, or ChatResponse.message content (streams
    accumulate it, so the last chunk holds all of it)."""
    if response is None:
        return ""
    text = getattr(response, "text", None)
    if isinstance(text, str):
        return text
    message = getattr(response, "message", None)
    if message is None:
        return ""
    content = getattr(message, "content", None)
    out = content if isinstance(content, str) else ""
    calls = (getattr(message, "additional_kwargs", None) or {}).get("tool_calls")
    if calls:
        out += str(calls)  # tool calls are generated tokens too
    return out


def prompt_tokens(messages: Sequence[Any] | None, prompt: str | None, model: str | None, *, bound: bool = False) -> int:
    """bound=True (a reservation): an upper bound until the tokenizer has loaded (tokens.py)."""
    return lifecycle.prompt_tokens(messages, (prompt,) if prompt else None, model, bound=bound)


def estimate(messages: Sequence[Any] | None, prompt: str | None, output: str, model: str | None) -> Usage:
    """Usage counted offline when the provider sent none (flagged `estimated`)."""
    return lifecycle.estimate(prompt_tokens(messages, prompt, model), output, model)


# -- content (only with capture_content=True: it may hold personal data) -------------------------
# the LangChain integration's shapes: [{"role", "parts": [{"type": "text", "content"}]}] JSON


def _role(message: Any) -> str:
    role = getattr(message, "role", None)
    role = getattr(role, "value", role)
    return str(role) if role else "user"


def input_messages(messages: Sequence[Any] | None, prompt: str | None) -> str:
    out: list[dict[str, Any]] = []
    for m in messages or ():
        out.append({"role": _role(m), "parts": [{"type": "text", "content": text_of(getattr(m, "content", m))}]})
    if prompt is not None:
        out.append({"role": "user", "parts": [{"type": "text", "content": prompt}]})
    return json.dumps(out, default=str, ensure_ascii=False)


def output_messages(response: Any) -> str:
    parts: list[dict[str, Any]] = [{"type": "text", "content": response_text(response)}]
    message = getattr(response, "message", None)
    for call in (getattr(message, "additional_kwargs", None) or {}).get("tool_calls") or ():
        fn = call.get("function") if isinstance(call, Mapping) else getattr(call, "function", None)
        parts.append(
            {
                "type": "tool_call",
                "name": fn.get("name") if isinstance(fn, Mapping) else getattr(fn, "name", None),
                "arguments": fn.get("arguments") if isinstance(fn, Mapping) else getattr(fn, "arguments", None),
            }
        )
    return json.dumps([{"role": "assistant", "parts": parts}], default=str, ensure_ascii=False)
