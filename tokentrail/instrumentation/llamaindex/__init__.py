"""LlamaIndex instrumentation: `tokentrail.instrument_llamaindex()`.

    import tokentrail
    tokentrail.configure(project="shop")
    tokentrail.instrument_llamaindex()          # or: with tokentrail.instrument_llamaindex(): ...
    with tokentrail.attributes(user_id="alice", feature="search"):
        index.as_query_engine().query("...")     # LlamaIndex calls carry no metadata: attribute here

A span handler and an event handler on LlamaIndex's root dispatcher turn its spans into
OpenTelemetry spans (model calls with usage and cost, retrievers, tools, agents, workflows), and
`Dispatcher.event` is wrapped so that a blocking budget stops a call before its provider runs.
"""

from __future__ import annotations

import threading
from typing import Any

from ..._internal import optional
from ..common import InstrumentationHandle

with optional("tokentrail's LlamaIndex instrumentation"):
    from .handler import (
        Errors,
        TokentrailEventHandler,
        TokentrailSpanHandler,
        pending_block,
    )

__all__ = [
    "LlamaIndexInstrumentation",
    "TokentrailEventHandler",
    "TokentrailSpanHandler",
    "active",
    "instrument_llamaindex",
]


class _Installed:
    """The handlers on the root dispatcher and the Dispatcher.event patch (one per process)."""

    def __init__(self) -> None:
        from llama_index.core.instrumentation import get_dispatcher

        self.root = get_dispatcher()
        self.span_handler = TokentrailSpanHandler()
        self.event_handler = TokentrailEventHandler(self.span_handler)
        self.dispatcher_cls: Any = type(self.root)  # its `event` method is patched at run time
        self.original_event: Any = self.dispatcher_cls.__dict__.get("event")
        self.patched_event: Any = None

    @property
    def errors(self) -> Errors:
        return self.span_handler.errors

    def install(self) -> None:
        self.root.add_span_handler(self.span_handler)
        self.root.add_event_handler(self.event_handler)
        original = self.original_event
        if original is None:
            return

        def event(self: Any, event: Any, **kwargs: Any) -> None:
            # LlamaIndex swallows what handlers raise; a BudgetExceeded stashed by ours is
            # raised here, in the caller, before the provider is called
            token = pending_block.set(None)
            try:
                original(self, event, **kwargs)
                blocked = pending_block.get()
            finally:
                pending_block.reset(token)
            if blocked is not None:
                raise blocked

        event.__wrapped__ = original  # type: ignore[attr-defined]
        event.__doc__ = original.__doc__
        self.patched_event = event
        self.dispatcher_cls.event = event

    def uninstall(self) -> None:
        root = self.root
        for handlers, mine in ((root.span_handlers, self.span_handler), (root.event_handlers, self.event_handler)):
            for i in range(len(handlers) - 1, -1, -1):
                if handlers[i] is mine:
                    del handlers[i]
        # restore only our own patch: someone may have wrapped it again since
        if self.patched_event is not None and self.dispatcher_cls.__dict__.get("event") is self.patched_event:
            self.dispatcher_cls.event = self.original_event
        self.span_handler.end_all()


_lock = threading.Lock()
_installed: _Installed | None = None
_handles = 0


class LlamaIndexInstrumentation(InstrumentationHandle):
    """What `instrument_llamaindex()` returns: `uninstrument()` (or calling it, or leaving its
    `with` block) undoes this handle. Handles are counted: LlamaIndex stays instrumented until
    every handle is undone, so a `with` block inside an instrumented program changes nothing."""

    def __init__(self) -> None:
        super().__init__(_release)

    @property
    def span_handler(self) -> TokentrailSpanHandler | None:
        inst = _installed
        return inst.span_handler if inst is not None else None

    @property
    def errors(self) -> list[BaseException]:
        """Internal errors tokentrail hit in LlamaIndex handlers (logged too), most recent last."""
        inst = _installed
        return list(inst.errors.seen) if inst is not None else []


def _release() -> None:
    global _installed, _handles
    with _lock:
        _handles -= 1
        if _handles == 0 and _installed is not None:
            inst, _installed = _installed, None
            inst.uninstall()


def instrument_llamaindex() -> LlamaIndexInstrumentation:
    """Instrument every LlamaIndex call in this process (idempotent: the handlers are added once
    however often this is called). Returns an undo handle that is also a context manager."""
    global _installed, _handles
    with _lock:
        if _installed is None:
            inst = _Installed()
            inst.install()
            _installed = inst
        _handles += 1
        return LlamaIndexInstrumentation()


def active() -> bool:
    """True while LlamaIndex is instrumented."""
    return _installed is not None
