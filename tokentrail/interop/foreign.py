"""A SpanProcessor that prices other instrumentations' GenAI spans into tokentrail's ledger.

    provider.add_span_processor(tokentrail.span_processor())   # the user's own TracerProvider
    tokentrail.instrument_otel()                                # or: the global one

For each model-call span that OpenInference, OpenLLMetry or OpenTelemetry's genai
instrumentations end, one row goes to `tokentrail.spans` through tokentrail's own ledger
processor (the same encoder, spool and store as tokentrail's hooks): usage normalised
(normalise.py), priced at the span's start time by the PriceBook, attributed from
`tokentrail.attributes()` (as current where the span started) and the span's own user and
session (ledger_row.py). Chains, tools and agents of other instrumentations are not copied:
the ledger is about model calls. Where a span's start carries the model, budgets reserve
then and settle at its end (foreign_budget.py says which instrumentations can block).

Counted once (dedupe.py): a model-call span whose parent is itself a model call (OpenLLMetry's
LangChain span above the openai-v2 client span, or tokentrail's own span above either) is not
priced again; a foreign model-call span with a tokentrail model-call span inside it leaves
the pricing to tokentrail's hooks (they see the provider's own usage). Skips are counted
(`duplicates`).

Cost: every span of the provider passes here, so the start keeps only what the end needs (no
lock, no lookups), and the end of a span that is no model call stops at one set test on its
attribute keys (bench/interop_processor.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from .. import context as attribution_ctx
from .._internal import handle_internal_error, internal_errors
from ..errors import BudgetExceeded
from . import foreign_budget as fb
from . import normalise as nz
from .dedupe import Call, Calls, OwnSpanWatcher, own_model_span, tokens
from .ledger_row import Attributions, ledger_span

__all__ = ["ForeignSpanProcessor"]

_MAX_OPEN = 100_000  # spans started and not ended kept track of: a leak stops growing here
# a model call has at least one of these keys (normalise.is_model_call), every one of a family
# normalise.family knows: a span with none of them is not looked at further
MARKERS = frozenset({"openinference.span.kind", "gen_ai.operation.name", "llm.request.type", *nz._INPUT, *nz._OUTPUT})
_SPAN, _ATTRIBUTION, _THREAD, _STARTED, _RESERVATION, _COVERED, _UNDER_OWN = range(7)


def _attrs(span: Any) -> Any:
    """The span's attributes as the plain dict the SDK keeps inside its BoundedAttributes
    (`_dict`, read only): `span.attributes` wraps that in two mappings, each key read then
    costs two Python calls. Anything else: one copy."""
    raw = getattr(getattr(span, "_attributes", None), "_dict", None)
    return raw if type(raw) is dict else dict(span.attributes or {})


class ForeignSpanProcessor(SpanProcessor):
    """See the module docstring. `runtime`: a Tokentrail, or None for the default instance
    (`current()` when a span ends, so a later configure() is followed; `peek()`, which never
    makes one, when a span starts)."""

    def __init__(
        self, runtime: Any = None, *, current: Callable[[], Any] | None = None, peek: Callable[[], Any] | None = None
    ) -> None:
        self._runtime = runtime
        if runtime is None:
            from ..instrumentation import seams

            current = current or seams.current
        self._current = current
        self._peek = peek or current
        # span id -> [span, attribution, thread, started (monotonic), reservation, covered, under own]
        self._open: dict[int, list[Any]] = {}
        self._calls = Calls()
        self._memo = Attributions()
        self._lock = threading.Lock()
        self.recorded = 0  # rows written
        self._watched: set[int] = set()
        self._last_rt: Any = None  # the instance watched last: most starts need only this test
        if runtime is not None:
            self.watch(runtime)

    @property
    def duplicates(self) -> int:
        """Model calls left to an outer span or to tokentrail's hooks."""
        return self._calls.duplicates

    def _rt(self) -> Any:
        return self._runtime if self._runtime is not None else self._current()  # type: ignore[misc]

    def watch(self, rt: Any) -> None:
        """Hook tokentrail's own provider, to see its model calls made inside a foreign one."""
        self._last_rt = rt
        with self._lock:
            if id(rt) in self._watched:
                return
            self._watched.add(id(rt))
        rt.provider.add_span_processor(OwnSpanWatcher(self._calls, self._covered, self.release_pending))

    def _covered(self, span_id: int) -> None:
        entry = self._open.get(span_id)
        if entry is not None:
            entry[_COVERED] = True

    # -- SpanProcessor -----------------------------------------------------------------------
    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        scope = span.instrumentation_scope
        if scope is not None and scope.name == "tokentrail":
            return  # added to tokentrail's own provider: its spans are in the ledger already
        rt = self._runtime if self._runtime is not None else self._peek()  # type: ignore[misc]
        if rt is not None and rt is not self._last_rt:
            self.watch(rt)
        parent: Any = trace.get_current_span(parent_context)
        # inside tokentrail's own model call (still open: an ended one may linger in a context)
        under_own = own_model_span(parent) and parent.is_recording()
        entry = [span, attribution_ctx.current(), threading.get_ident(), time.monotonic_ns(), None, False, under_own]
        if len(self._open) < _MAX_OPEN:
            self._open[span.context.span_id] = entry  # one dict store: atomic, no lock needed
        if rt is not None and scope is not None and not under_own and rt.settings.budgets:
            request = fb.start_request(scope.name, span._attributes or {})
            if request is not None:
                self._reserve(rt, span, entry, request)

    def _reserve(self, rt: Any, span: Span, entry: list[Any], request: Any) -> None:
        above = self._open.get(span.parent.span_id) if span.parent is not None else None
        if above is not None and above[_RESERVATION] is not None:
            return  # reserved by the foreign span around it
        gate = rt.budgets
        if gate is None:
            return
        try:
            with internal_errors("reserving a budget for a foreign model call"):
                entry[_RESERVATION] = fb.reserve(rt, gate, entry[_ATTRIBUTION], span._attributes or {}, request)
        except BudgetExceeded as e:
            fb.blocked(span, e)
            raise  # reaches the caller before the provider is called (foreign_budget.py)

    def on_end(self, span: ReadableSpan) -> None:
        entry = self._open.pop(span.context.span_id, None)  # type: ignore[union-attr]
        attrs = _attrs(span)
        if MARKERS.isdisjoint(attrs):
            if entry is not None and entry[_RESERVATION] is not None:
                self._settle(entry, None)
            return
        try:
            self._record(span, attrs, entry)
        except Exception as e:  # noqa: BLE001 - the guard inlined: a context manager costs ~1.5 µs a span
            if entry is not None and entry[_RESERVATION] is not None:
                self._settle(entry, None)  # not held until it expires
            handle_internal_error("pricing a foreign GenAI span", e)

    def shutdown(self) -> None:
        self.release_pending()
        self._open.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Write the calls held (dedupe.py) and flush tokentrail's ledger processor: a flush of
        the user's provider delivers the rows made from its spans too."""
        self.release_pending()
        rt = self._runtime if self._runtime is not None else self._peek()  # type: ignore[misc]
        if rt is not None:
            return bool(rt.processor.force_flush(timeout_millis))
        return True

    def release_pending(self) -> None:
        self._calls.release_held()

    # -- the work ----------------------------------------------------------------------------
    def _record(self, span: ReadableSpan, attrs: Any, entry: list[Any] | None) -> None:
        fam = nz.family(attrs)
        if fam is None or not nz.is_model_call(attrs):
            if entry is not None and entry[_RESERVATION] is not None:
                self._settle(entry, None)
            return
        if entry is not None and (entry[_UNDER_OWN] or entry[_COVERED] or self._inside_model_call(span)):
            self._calls.skipped()
            if entry[_RESERVATION] is not None:
                self._settle(entry, None)
            return
        rt = self._rt()
        if rt is not self._last_rt:
            self.watch(rt)
        row, cost = ledger_span(rt, span, attrs, fam, entry[_ATTRIBUTION] if entry else None, self._memo)
        now = time.monotonic_ns()
        call = Call(entry[_STARTED] if entry else now, now, entry[_THREAD] if entry else threading.get_ident(), tokens(row.attributes or {}))

        def done(write: bool) -> None:
            if write:
                self._emit(rt, row)
            if entry is not None and entry[_RESERVATION] is not None:
                self._settle(entry, cost if write else None)

        admitted = self._calls.admit(call, done)
        if admitted is not None:
            done(admitted)

    def _settle(self, entry: list[Any], cost: Any) -> None:
        """The real cost of a reserved call (its row is written), or the reservation given
        back (no row: a duplicate, an error before usage, not a model call after all)."""
        reservation, entry[_RESERVATION] = entry[_RESERVATION], None
        gate = self._rt().budgets
        if gate is None:
            return
        with internal_errors("settling a foreign model call's budget reservation"):
            if cost is not None and cost.total_usd is not None:
                gate.settle(reservation, cost)
            else:
                gate.release(reservation)

    def _emit(self, rt: Any, row: ReadableSpan) -> None:
        rt.processor.on_end(row)
        with self._lock:
            self.recorded += 1

    def _inside_model_call(self, span: ReadableSpan) -> bool:
        parent = span.parent
        if parent is None:
            return False
        if parent.span_id in self._calls.own_open:
            return True  # tokentrail's own model call
        above = self._open.get(parent.span_id)
        if above is None:
            return False
        pattrs = _attrs(above[_SPAN])
        return not MARKERS.isdisjoint(pattrs) and nz.family(pattrs) is not None and nz.is_model_call(pattrs)
