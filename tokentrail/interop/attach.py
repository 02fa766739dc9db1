"""`tokentrail.instrument_otel()`: the foreign-span processor on the global TracerProvider."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from opentelemetry import trace

from ..errors import ConfigError
from .foreign import ForeignSpanProcessor

_lock = threading.Lock()
_installed: dict[int, ForeignSpanProcessor] = {}


def instrument_global(peek: Callable[[], Any] | None = None) -> ForeignSpanProcessor:
    """Idempotent: a second call returns the processor the first one added. `peek`: the
    default instance if there is one (never making it), for span starts."""
    provider: Any = trace.get_tracer_provider()
    if not hasattr(provider, "add_span_processor"):
        # the API's proxy before any SDK provider is set: make one, as logfire does
        from opentelemetry.sdk.trace import TracerProvider

        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        provider = trace.get_tracer_provider()
        if not hasattr(provider, "add_span_processor"):
            raise ConfigError(
                "instrument_otel()", "the global TracerProvider is not the OpenTelemetry SDK's",
                "add tokentrail.span_processor() to your own provider instead",
            )
    with _lock:
        found = _installed.get(id(provider))
        if found is None:
            found = ForeignSpanProcessor(peek=peek)
            provider.add_span_processor(found)
            _installed[id(provider)] = found
    return found
