"""What the budget manager needs of the running tokentrail (runtime.Tokentrail), as small
Protocols (budgets sits below runtime and instrumentation, so it names only these), and the
suppress-instrumentation context its background I/O runs in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry.context import _SUPPRESS_HTTP_INSTRUMENTATION_KEY, _SUPPRESS_INSTRUMENTATION_KEY

if TYPE_CHECKING:
    from ..pricing import Cost
    from ..usage import Usage

__all__ = ["EventWriter", "Flusher", "Host", "Prices", "suppressed"]


class Prices(Protocol):
    """Prices a call (tokentrail.pricing.PriceBook): unknown is an unpriced Cost, never a raise."""

    def cost(self, usage: Usage | None, model: str | None, provider: str | None, when: datetime) -> Cost: ...


class EventWriter(Protocol):
    """Where budget_events rows go (the ClickHouse exporter: the store, or the spool)."""

    def write(self, table: str, payload: bytes) -> bool: ...


class Flusher(Protocol):
    """The span pipeline, flushed before a refresh reads the store (the TracerProvider)."""

    def force_flush(self, timeout_millis: int = ...) -> bool: ...


class Host(Protocol):
    """The runtime as the budget manager sees it."""

    @property
    def settings(self) -> Any: ...  # config.Settings (config imports budgets.model: not named here)

    @property
    def prices(self) -> Prices: ...

    @property
    def exporter(self) -> EventWriter: ...

    @property
    def provider(self) -> Flusher: ...

    def now_ns(self) -> int: ...


@contextmanager
def suppressed() -> Iterator[None]:
    """Background I/O of budgets (store refreshes, event writes, webhooks) runs with
    OpenTelemetry's suppress-instrumentation keys set, so a user's own instrumentation (urllib,
    urllib3, database clients: they check them) records none of it (opentelemetry-python's
    rule for exporters). Only the API's context is needed, no instrumentation package."""
    ctx = otel_context.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True)
    ctx = otel_context.set_value(_SUPPRESS_HTTP_INSTRUMENTATION_KEY, True, ctx)
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)
