"""tokentrail: know, cap and cut what LLM applications spend.

    import tokentrail
    tokentrail.configure(project="shop")
    chain.invoke(x, config={"callbacks": [tokentrail.langchain_handler(user_id="alice")]})
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _internal
from .context import attributes
from .errors import AllowanceExceeded, BudgetExceeded, ConfigError, MissingExtra, TokentrailError
from .runtime import Tokentrail, get
from .version import VERSION as __version__

if TYPE_CHECKING:
    from .budgets import Budget
    from .instrumentation.langchain import TokentrailCallbackHandler

__all__ = [
    "AllowanceExceeded",
    "Budget",
    "BudgetExceeded",
    "ConfigError",
    "MissingExtra",
    "Tokentrail",
    "TokentrailError",
    "__version__",
    "attributes",
    "configure",
    "flush",
    "get",
    "instrument_langchain",
    "instrument_llamaindex",
    "instrument_otel",
    "langchain_handler",
    "shutdown",
    "span_processor",
]


def configure(
    *,
    clickhouse_url: str | None = None,
    home: str | Path | None = None,
    project: str | None = None,
    environment: str | None = None,
    budgets: Sequence[Any] = (),
    prices: Any = None,
    capture_content: bool | None = None,
    service_name: str | None = None,
    webhook_url: str | None = None,
    retention_days: int | None = None,
    cluster: str | None = None,
    insert_deadline_s: float | None = None,
    spool_max_bytes: int | None = None,
    queue_max_spans: int | None = None,
    sql_max_seconds: float | None = None,
    sql_max_memory_bytes: int | None = None,
    sql_max_rows: int | None = None,
    budget_backend: str | None = None,
    budget_reservation_seconds: float | None = None,
    config_file: str | None = None,
    otlp_endpoint: str | None = None,
    cost_attributes_draft: bool | None = None,
    additional_span_processors: Sequence[Any] = (),
    currency: Any = None,
) -> Tokentrail:
    """Configure the default tokentrail instance. Each argument falls back to its environment
    variable (TOKENTRAIL_CLICKHOUSE_URL, TOKENTRAIL_HOME, TOKENTRAIL_PROJECT, ...), then to
    tokentrail.toml, then to the default. A bad value raises ConfigError (one line). Every
    setting of tokentrail.config.Settings is an argument here (one registry: config._FIELDS).
    `additional_span_processors` are added to tokentrail's TracerProvider (logfire's name);
    `otlp_endpoint` (or OTEL_EXPORTER_OTLP_ENDPOINT) sends its spans over OTLP/HTTP too."""
    from . import runtime

    rt = runtime.configure(
        config_file=config_file,
        clickhouse_url=clickhouse_url,
        home=home,
        project=project,
        environment=environment,
        budgets=tuple(budgets),
        prices=prices,
        capture_content=capture_content,
        service_name=service_name,
        webhook_url=webhook_url,
        retention_days=retention_days,
        cluster=cluster,
        insert_deadline_s=insert_deadline_s,
        spool_max_bytes=spool_max_bytes,
        queue_max_spans=queue_max_spans,
        sql_max_seconds=sql_max_seconds,
        sql_max_memory_bytes=sql_max_memory_bytes,
        sql_max_rows=sql_max_rows,
        budget_backend=budget_backend,
        budget_reservation_seconds=budget_reservation_seconds,
        otlp_endpoint=otlp_endpoint,
        cost_attributes_draft=cost_attributes_draft,
        span_processors=tuple(additional_span_processors),
        currency=currency,
    )
    _warm_up(rt)
    return rt


def _warm_up(rt: Tokentrail) -> None:
    """Start now what the first instrumented call would otherwise wait for: with budgets, the
    budget manager's modules are imported, the budget snapshot and time zones read (file reads
    inside a call would stall an asyncio loop) and the tokenizer loads in the background; on a
    home that has priced nothing yet, genai-prices' data loads in the background."""
    with _internal.internal_errors("warming up"):
        if rt.settings.budgets:
            from . import tokens
            from .budgets import manager, periods, snapshot  # noqa: F401  (imported here, not in the first call)

            snapshot.prefetch(rt.settings)
            for budget in rt.settings.budgets:
                periods._zone(budget.timezone)
            tokens.preload()
        rt.prices.warm_in_background()


def langchain_handler(**attribution: Any) -> TokentrailCallbackHandler:
    """A LangChain callback handler; keyword arguments are attribution (user_id=, feature=, ...)."""
    with _internal.optional("tokentrail.langchain_handler()"):
        from .instrumentation.langchain import langchain_handler as make

    return make(**attribution)


def instrument_langchain() -> Any:
    """Instrument every LangChain run in this process; returns an undo handle (also a context manager)."""
    with _internal.optional("tokentrail.instrument_langchain()"):
        from .instrumentation.langchain import instrument_langchain as inst

    return inst()


def instrument_llamaindex() -> Any:
    """Instrument LlamaIndex's root dispatcher; returns an undo handle (also a context manager)."""
    with _internal.optional("tokentrail.instrument_llamaindex()"):
        from .instrumentation.llamaindex import instrument_llamaindex as inst

    return inst()


def span_processor() -> Any:
    """A SpanProcessor for your own TracerProvider: it prices the GenAI spans OpenInference,
    OpenLLMetry and OpenTelemetry's genai instrumentations make, into tokentrail's ledger."""
    from . import runtime
    from .interop.foreign import ForeignSpanProcessor

    return ForeignSpanProcessor(peek=runtime.current_or_none)


def instrument_otel() -> Any:
    """Add `span_processor()` to the global TracerProvider (an SDK one); returns the processor."""
    from . import runtime
    from .interop.attach import instrument_global

    return instrument_global(peek=runtime.current_or_none)


def flush(timeout_millis: int = 30000) -> bool:
    """Export every finished span now (to the store, or to the spool for the embedded store)."""
    return get().flush(timeout_millis)


def shutdown() -> None:
    """Flush and stop the default instance."""
    get().shutdown()


def __getattr__(name: str) -> Any:
    if name == "Budget":
        from .budgets import Budget

        return Budget
    raise AttributeError(f"module 'tokentrail' has no attribute {name!r}")
