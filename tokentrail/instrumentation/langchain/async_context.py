"""Taking a run's OTel context off in the caller's asyncio task.

langchain-core runs the async end callbacks (on_chain_end, on_llm_end, their errors...) in a
new task made from a *copy* of the caller's context (`@shielded`, so a cancellation cannot
interrupt them). A context our start callback attached in the caller's task cannot be
detached from that copy: the caller would be left with an ended span as its current span, and
whatever it traces next would nest under it.

So the async run managers' end methods are wrapped: before langchain-core hands the event to
the shielded task, still in the caller's task, the run's context is taken off. The wrapper
does one dict lookup for runs tokentrail does not record. It is installed once, when the first
tokentrail handler is made, and `uninstall()` puts the originals back.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from ... import _internal

_MARK = "__tokentrail_wrapped__"
_METHODS: dict[str, tuple[str, ...]] = {
    "AsyncCallbackManagerForChainRun": ("on_chain_end", "on_chain_error"),
    "AsyncCallbackManagerForLLMRun": ("on_llm_end", "on_llm_error"),
    "AsyncCallbackManagerForToolRun": ("on_tool_end", "on_tool_error"),
    "AsyncCallbackManagerForRetrieverRun": ("on_retriever_end", "on_retriever_error"),
}

_lock = threading.Lock()
_patched: list[tuple[type, str, Any]] = []
_release: Callable[[Any], None] | None = None


def _wrap(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        release = _release
        if release is not None:
            try:
                release(self.run_id)
            except Exception:
                if _internal._reraise():
                    raise
                _internal.logger.exception("tokentrail internal error releasing a run context (your program continues)")
        return await original(self, *args, **kwargs)

    setattr(wrapper, _MARK, original)
    return wrapper


def install(release: Callable[[Any], None]) -> None:
    """Wrap the async run managers' end methods to call release(run_id) first. Idempotent."""
    global _release
    with _lock:
        _release = release
        if _patched:
            return
        from langchain_core.callbacks import manager

        for class_name, methods in _METHODS.items():
            cls = getattr(manager, class_name, None)
            if cls is None:
                continue
            for name in methods:
                original = cls.__dict__.get(name)
                if original is None or getattr(original, _MARK, None) is not None:
                    continue
                setattr(cls, name, _wrap(original))
                _patched.append((cls, name, original))


def uninstall() -> None:
    global _release
    with _lock:
        for cls, name, original in reversed(_patched):
            setattr(cls, name, original)
        _patched.clear()
        _release = None
