"""OpenTelemetry helpers the integration tests share: an in-memory exporter beside the store,
hex ids as the store writes them, and a check that no span of ours is left current."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace


def configure_memory(home: Any, **settings: Any) -> tuple[Any, Any]:
    """Configure the default instance (embedded store in `home`) plus an in-memory exporter."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tokentrail import runtime

    exporter = InMemorySpanExporter()
    settings.setdefault("project", "test")
    rt = runtime.configure(home=home, span_processors=(SimpleSpanProcessor(exporter),), **settings)
    return rt, exporter


def span_id(span: Any) -> str:
    return format(span.get_span_context().span_id, "016x")


def parent_id(span: Any) -> str:
    return format(span.parent.span_id, "016x") if span.parent else ""


def no_context_left() -> bool:
    """True when no span is current in this thread's OTel context (nothing leaked by a test)."""
    return trace.get_current_span() is trace.INVALID_SPAN
