"""The tokentrail instance: settings, tracer, exporter, prices, budgets.

Like logfire, module-level functions in `tokentrail` are bound to one default instance, created
by `configure()` (or lazily, with defaults, on first use).
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, get_current_span
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from . import clock as wall_clock
from . import config as config_mod
from .config import Settings
from .context import Attribution
from .instrumentation import seams
from .version import VERSION

if TYPE_CHECKING:
    from .budgets import BudgetManager

logger = logging.getLogger("tokentrail")



class _OpenSpans(SpanProcessor):
    """Counts spans started and not yet ended: a leak shows here."""

    def __init__(self) -> None:
        self.open = 0
        self._lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        with self._lock:
            self.open += 1

    def on_end(self, span: ReadableSpan) -> None:
        with self._lock:
            self.open -= 1


class _Ledger(Sampler):
    """Every tokentrail span is recorded: it is an entry of the cost ledger, whatever the
    sampling of the trace it joins. Inside an unsampled trace it is recorded but stays
    unsampled (RECORD_ONLY), so the sampling of the user's own spans under it is unchanged."""

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        parent = get_current_span(parent_context).get_span_context()
        if not parent.is_valid:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, None)
        decision = Decision.RECORD_AND_SAMPLE if parent.trace_flags.sampled else Decision.RECORD_ONLY
        return SamplingResult(decision, attributes, parent.trace_state)

    def get_description(self) -> str:
        return "TokentrailLedger"


class Tokentrail:
    """One configured tokentrail: build with `tokentrail.configure()`."""

    def __init__(self, settings: Settings, *, span_processors: tuple[SpanProcessor, ...] = ()) -> None:
        from .exporters.clickhouse import ClickHouseSpanExporter
        from .exporters.processor import LedgerSpanProcessor

        self.settings = settings
        self.defaults = Attribution(project=settings.project, environment=settings.environment)
        from .pricing import PriceBook

        self.prices = PriceBook(settings.prices, memo_dir=settings.home)
        self.exporter = ClickHouseSpanExporter(settings)
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": settings.service_name}), sampler=_Ledger()
        )
        self._open_spans = _OpenSpans()
        self.provider.add_span_processor(self._open_spans)
        # not BatchSpanProcessor: it drops spans when its queue is full (see exporters/processor.py)
        self.processor = LedgerSpanProcessor(self.exporter, max_queue=settings.queue_max_spans)
        self.provider.add_span_processor(self.processor)
        for p in span_processors:
            self.provider.add_span_processor(p)
        from .exporters.otlp import otlp_processor
        from .interop import genai_cost

        genai_cost.set_draft(settings.cost_attributes_draft)
        found = otlp_processor(settings.otlp_endpoint)  # the OTLP copy, if configured
        self.otlp = found[1] if found else None
        if found:
            self.provider.add_span_processor(found[0])
        self.tracer: SdkTracer = self.provider.get_tracer("tokentrail", VERSION)  # type: ignore[assignment]
        self._budgets: BudgetManager | None = None
        self._closed = False
        # Wall clock in ns for span times and price dates; the demo and tests shift it.
        self.clock: Callable[[], int] = wall_clock.now_ns

    def now_ns(self) -> int:
        return self.clock()

    @property
    def open_spans(self) -> int:
        return self._open_spans.open

    @property
    def budgets(self) -> BudgetManager | None:
        """The budget manager, or None when no budget is configured."""
        if self._budgets is None and self.settings.budgets:
            from .budgets import BudgetManager

            self._budgets = BudgetManager(self)
        return self._budgets

    def budgets_without_thread(self) -> BudgetManager | None:
        """The budget manager built without its background thread (None when no budget is
        configured): the caller refreshes it (`refresh()`) and delivers its events (`deliver()`)
        on its own schedule, as the demo does on its simulated clock. Call before `budgets`."""
        if self._budgets is None and self.settings.budgets:
            from .budgets import BudgetManager

            self._budgets = BudgetManager(self, start=False)
        return self._budgets

    def flush(self, timeout_millis: int = 30000) -> bool:
        ok = self.provider.force_flush(timeout_millis)
        if self._budgets is not None:
            self._budgets.flush()
        return ok

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._budgets is not None:
                self._budgets.shutdown()
            self.provider.shutdown()
        except Exception:  # shutdown runs at exit: log, never raise into the program ending
            logger.exception("tokentrail: error during shutdown")


_default: Tokentrail | None = None
_default_lock = threading.Lock()


def configure(*, config_file: str | None = None, span_processors: tuple[SpanProcessor, ...] = (), **kwargs: Any) -> Tokentrail:
    global _default
    settings = config_mod.resolve(config_file=config_file, **kwargs)
    new = Tokentrail(settings, span_processors=span_processors)
    with _default_lock:
        old, _default = _default, new
    if old is not None:
        old.shutdown()
    return new


def get() -> Tokentrail:
    """The default instance; configured with defaults (env vars, tokentrail.toml) on first use."""
    global _default
    inst = _default
    if inst is None:
        with _default_lock:
            if _default is None:
                _default = Tokentrail(config_mod.resolve())
            inst = _default
    return inst


def current_or_none() -> Tokentrail | None:
    return _default


@atexit.register
def _shutdown_at_exit() -> None:
    if _default is not None:
        _default.shutdown()


seams.set_current(get)  # the integrations read the default instance through seams.current()


def reset() -> None:
    """Shut down the default instance and forget it: the next get() configures a new one
    (tokentrail.testing uses this between tests)."""
    global _default
    with _default_lock:
        old, _default = _default, None
    if old is not None:
        old.shutdown()
