"""tokentrail's spans to any OTLP/HTTP endpoint as well (Langfuse, Phoenix, a Collector, ...).

On when `otlp_endpoint=` (TOKENTRAIL_OTLP_ENDPOINT) is set, or when the standard
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT is; `none` turns it off.
Headers, timeout, compression and certificates come from the standard OTEL_EXPORTER_OTLP_*
variables, read by opentelemetry-exporter-otlp-proto-http itself (an optional extra).

This is a copy for other backends: the ledger is the ClickHouse store. The copy goes through
the SDK's BatchSpanProcessor; what it could not send is counted here (`failed_spans`) and
logged, never silently.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

logger = logging.getLogger("tokentrail.exporter")

__all__ = ["CountingExporter", "otlp_processor", "traces_endpoint"]

_TRACES_PATH = "/v1/traces"


def traces_endpoint(setting: str | None, environ: Any = os.environ) -> str | None:
    """The full traces URL to send to, or None for no OTLP copy."""
    if setting == "none":
        return None
    if setting:
        base = setting.rstrip("/")
        return base if base.endswith(_TRACES_PATH) else base + _TRACES_PATH
    traces = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    if traces:
        return str(traces)  # a signal URL: used as it is (OTel spec)
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if base:
        return str(base).rstrip("/") + _TRACES_PATH
    return None


class CountingExporter(SpanExporter):
    """Wraps an exporter: counts spans sent and spans whose export failed (never raises)."""

    def __init__(self, inner: SpanExporter, endpoint: str) -> None:
        self.inner = inner
        self.endpoint = endpoint
        self.sent_spans = 0
        self.failed_spans = 0
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception:  # an exporter returns FAILURE, never raises (counted below)
            logger.exception("tokentrail: OTLP export to %s raised", self.endpoint)
            result = SpanExportResult.FAILURE
        with self._lock:
            if result is SpanExportResult.SUCCESS:
                self.sent_spans += len(spans)
            else:
                self.failed_spans += len(spans)
        if result is not SpanExportResult.SUCCESS:
            logger.warning("tokentrail: %d spans not sent to %s (the store has them)", len(spans), self.endpoint)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def otlp_processor(setting: str | None) -> tuple[Any, CountingExporter] | None:
    """(a BatchSpanProcessor for tokentrail's provider, its counting exporter), or None."""
    endpoint = traces_endpoint(setting)
    if endpoint is None:
        return None
    from .._internal import optional

    with optional("otlp_endpoint / OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter = CountingExporter(OTLPSpanExporter(endpoint=endpoint), endpoint)
    return BatchSpanProcessor(exporter), exporter
