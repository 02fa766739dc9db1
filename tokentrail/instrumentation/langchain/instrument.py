"""instrument_langchain(): every LangChain run in the process, without passing a handler.

langchain-core asks each registered "configure hook" for a handler whenever it builds a callback
manager; ours answers with one process-wide TokentrailCallbackHandler while instrumented and
with None after. Because the hook is registered with the handler class, langchain-core adds it
only where no TokentrailCallbackHandler is already present: an explicitly passed
`tokentrail.langchain_handler(...)` is used instead, never beside it.

The hook object is a plain holder, not a ContextVar: a ContextVar set in one thread is unset in
threads started before it, and instrumentation must be global. langchain-core has no way to
unregister a hook, so the hook stays registered (once per process) and answers None when off.

Calls are reference-counted: each `instrument_langchain()` returns its own handle, and
LangChain is uninstrumented when every handle has been undone (so nested `with` blocks work).
"""

from __future__ import annotations

import threading

from ..common import InstrumentationHandle
from .embeddings import patch_embeddings, unpatch_embeddings
from .handler import TokentrailCallbackHandler

__all__ = ["LangChainInstrumentation", "instrument_langchain", "is_instrumented"]


class _HandlerSlot:
    """What register_configure_hook expects of a ContextVar: `.get()`, here process-wide."""

    def __init__(self) -> None:
        self.handler: TokentrailCallbackHandler | None = None

    def get(self) -> TokentrailCallbackHandler | None:
        return self.handler


_slot = _HandlerSlot()
_lock = threading.Lock()
_registered = False
_count = 0


def _acquire() -> TokentrailCallbackHandler:
    global _registered, _count
    with _lock:
        if not _registered:
            from langchain_core.tracers.context import register_configure_hook

            register_configure_hook(_slot, inheritable=True, handle_class=TokentrailCallbackHandler)  # type: ignore[arg-type]
            _registered = True
        if _count == 0:
            _slot.handler = TokentrailCallbackHandler()
            patch_embeddings()
        _count += 1
        assert _slot.handler is not None
        return _slot.handler


def _release() -> None:
    global _count
    with _lock:
        if _count == 0:
            return
        _count -= 1
        if _count == 0:
            _slot.handler = None
            unpatch_embeddings()


def is_instrumented() -> bool:
    return _slot.handler is not None


class LangChainInstrumentation(InstrumentationHandle):
    """The handle instrument_langchain() returns: `.uninstrument()` (or leave the `with` block);
    LangChain is restored when no handle is left."""

    def __init__(self) -> None:
        self.handler: TokentrailCallbackHandler = _acquire()
        super().__init__(_release)


def instrument_langchain() -> LangChainInstrumentation:
    """Record every LangChain run (and embeddings call) in this process. Returns an undo handle
    that is also a context manager. Calling it again is harmless: spans are never doubled."""
    return LangChainInstrumentation()
