"""The fees langchain-anthropic's stream chunks leave out (issue 14).

A streamed ChatAnthropic call reports its usage_metadata from the `message_delta` event alone:
the one-hour part of the cache writes (`usage.cache_creation.ephemeral_1h_input_tokens`, only
in `message_start`) and the server tool use (`usage.server_tool_use.web_search_requests`, in
`message_delta`) reach no chunk. Both are billed, so the converter that sees each raw event
(`ChatAnthropic._make_message_chunk_from_anthropic_event`) is wrapped, once a tokentrail handler
sees an Anthropic model run: it keeps what the events say for the model run whose span is
current (the run's context is attached while its stream is read), and that run's end adds them
to the usage it records. The wrapper returns what the converter returns, unchanged.
"""

from __future__ import annotations

import functools
import sys
import threading
from dataclasses import replace
from typing import Any

from opentelemetry import trace

from ... import _internal
from ...usage import Usage, count_or_none
from ..spans import RunSpan

__all__ = ["StreamFees", "ensure_patched", "take", "unpatch"]

_MARK = "__tokentrail_wrapped__"
_METHOD = "_make_message_chunk_from_anthropic_event"
_MAX_OPEN = 4096  # streams seen whose run has not ended yet: beyond that, a leak; start over


class StreamFees:
    """What one stream's raw events reported beyond its chunks' usage."""

    __slots__ = ("one_hour_writes", "web_searches")

    def __init__(self) -> None:
        self.one_hour_writes = 0
        self.web_searches = 0

    def apply(self, usage: Usage) -> Usage:
        one_hour = max(usage.cache_write_1h_tokens, min(self.one_hour_writes, usage.cache_write_tokens))
        searches = max(usage.web_search_requests, self.web_searches)
        if one_hour == usage.cache_write_1h_tokens and searches == usage.web_search_requests:
            return usage
        return replace(usage, cache_write_1h_tokens=one_hour, web_search_requests=searches)


# id(model span) -> its stream's fees; popped by the run's end (take)
_seen: dict[int, StreamFees] = {}
_lock = threading.Lock()
_patched: list[tuple[type, Any]] = []


def take(span: object) -> StreamFees | None:
    """The fees the stream of the run with this span reported (forgotten once taken)."""
    return _seen.pop(id(span), None) if _seen else None


def _count(obj: Any, *path: str) -> int:
    for name in path:
        obj = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if obj is None:
            return 0
    return count_or_none(obj) or 0


def _observe(event: Any) -> None:
    kind = getattr(event, "type", None)
    if kind == "message_start":
        one_hour = _count(getattr(event, "message", None), "usage", "cache_creation", "ephemeral_1h_input_tokens")
        searches = 0
    elif kind == "message_delta":
        one_hour = _count(event, "usage", "cache_creation", "ephemeral_1h_input_tokens")
        searches = _count(event, "usage", "server_tool_use", "web_search_requests")
    else:
        return
    if not (one_hour or searches):
        return
    span = trace.get_current_span()
    if type(span) is not RunSpan:  # not inside a run tokentrail records
        return
    key = id(span)
    fees = _seen.get(key)
    if fees is None:
        if len(_seen) >= _MAX_OPEN:
            _seen.clear()
        fees = _seen[key] = StreamFees()
    # cumulative counts: the largest is the call's
    fees.one_hour_writes = max(fees.one_hour_writes, one_hour)
    fees.web_searches = max(fees.web_searches, searches)


def _wrap(original: Any) -> Any:
    @functools.wraps(original)
    def converter(self: Any, event: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            _observe(event)
        except Exception as e:  # telemetry: the user's stream goes on
            _internal.handle_internal_error("anthropic stream fees", e)
        return original(self, event, *args, **kwargs)

    setattr(converter, _MARK, original)
    return converter


def ensure_patched() -> None:
    """Wrap ChatAnthropic's event converter, if langchain-anthropic is loaded (idempotent)."""
    if _patched:
        return
    module = sys.modules.get("langchain_anthropic.chat_models")
    cls = getattr(module, "ChatAnthropic", None) if module is not None else None
    if cls is None:
        return
    with _lock:
        original = cls.__dict__.get(_METHOD)
        if _patched or original is None or getattr(original, _MARK, None) is not None:
            return
        setattr(cls, _METHOD, _wrap(original))
        _patched.append((cls, original))


def unpatch() -> None:
    with _lock:
        for cls, original in _patched:
            setattr(cls, _METHOD, original)
        _patched.clear()
        _seen.clear()
