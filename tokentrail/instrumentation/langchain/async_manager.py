"""The two places tokentrail wraps langchain-core's async callback managers, and why.

Both wrappers are installed once, when the first tokentrail handler is made, and change nothing
for a callback manager that holds no tokentrail handler: they cost such a manager one check.

1. Taking a run's OTel context off in the caller's asyncio task. langchain-core runs the async
   end callbacks (on_chain_end, on_llm_end, their errors...) in a new task made from a *copy* of
   the caller's context (`@shielded`, so a cancellation cannot interrupt them). A context our
   start callback attached in the caller's task cannot be detached from that copy: the caller
   would be left with an ended span as its current span. So the async run managers' end
   methods call `release(run_id)` first, still in the caller's task (one dict lookup for runs
   tokentrail does not record).

2. `AsyncCallbackManager.on_llm_start` (text-completion LLMs, async): langchain-core (up to at
   least 1.8, upstream issue langchain-ai/langchain#39633) sends the event only to the inline
   handlers when any handler is inline, so every non-inline handler (the user's own handlers
   and tracers, astream_events, astream_log) misses `on_llm_start` and then gets an
   `on_llm_end` for a run it never saw. tokentrail's handler must be inline (it changes the
   caller's OTel context), so without this wrapper it would cause that loss. When the only
   inline handlers of a manager are tokentrail's, the wrapper lets langchain-core run the
   event for them (same run ids, same run managers) and then sends it to the other handlers
   exactly as langchain-core does when no handler is inline. When another inline handler is
   there too (LangSmith's tracer), the manager is left to langchain-core as is: the user sees
   what they would see without tokentrail. Should langchain-core fix this upstream, the
   wrapper's dispatch is the same as the fixed one (inline handlers in turn, then the others
   together), so it stays correct.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import threading
from collections.abc import Callable
from typing import Any

from ... import _internal

_MARK = "__tokentrail_wrapped__"
_END_METHODS: dict[str, tuple[str, ...]] = {
    "AsyncCallbackManagerForChainRun": ("on_chain_end", "on_chain_error"),
    "AsyncCallbackManagerForLLMRun": ("on_llm_end", "on_llm_error"),
    "AsyncCallbackManagerForToolRun": ("on_tool_end", "on_tool_error"),
    "AsyncCallbackManagerForRetrieverRun": ("on_retriever_end", "on_retriever_error"),
}

_lock = threading.Lock()
_patched: list[tuple[type, str, Any]] = []
_release: Callable[[Any], None] | None = None
_ours: type | None = None  # TokentrailCallbackHandler (no import cycle with handler.py)


def _wrap_end(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        release = _release
        if release is not None:
            try:
                release(self.run_id)
            except Exception as e:
                _internal.handle_internal_error("releasing a run context", e)
        return await original(self, *args, **kwargs)

    setattr(wrapper, _MARK, original)
    return wrapper


def _wrap_llm_start(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    async def on_llm_start(
        self: Any, serialized: dict[str, Any], prompts: list[str], run_id: Any = None, **kwargs: Any
    ) -> Any:
        ours = _ours
        handlers = self.handlers
        if ours is None or not any(isinstance(h, ours) for h in handlers):
            return await original(self, serialized, prompts, run_id, **kwargs)
        inline = [h for h in handlers if h.run_inline]
        others = [h for h in handlers if not h.run_inline]
        if not others or any(not isinstance(h, ours) for h in inline):
            return await original(self, serialized, prompts, run_id, **kwargs)
        from langchain_core.callbacks.manager import ahandle_event

        # tokentrail's handlers first (inline handlers run first), through langchain-core
        mine = copy.copy(self)
        mine.handlers = inline
        managers = await original(mine, serialized, prompts, run_id, **kwargs)
        # then everyone else, as langchain-core sends it when no handler is inline
        await asyncio.gather(
            *(
                ahandle_event(
                    others,
                    "on_llm_start",
                    "ignore_llm",
                    serialized,
                    [prompt],
                    run_id=manager.run_id,
                    parent_run_id=self.parent_run_id,
                    tags=self.tags,
                    metadata=self.metadata,
                    **kwargs,
                )
                for manager, prompt in zip(managers, prompts, strict=False)
            )
        )
        for manager in managers:
            manager.handlers = handlers
        return managers

    setattr(on_llm_start, _MARK, original)
    return on_llm_start


def install(release: Callable[[Any], None], ours: type) -> None:
    """Install both wrappers (idempotent); release(run_id) is called by the end methods."""
    global _release, _ours
    with _lock:
        _release, _ours = release, ours
        if _patched:
            return
        from langchain_core.callbacks import manager

        targets: list[tuple[type | None, str, Callable[[Callable[..., Any]], Callable[..., Any]]]] = [
            (getattr(manager, cls_name, None), name, _wrap_end) for cls_name, names in _END_METHODS.items() for name in names
        ]
        targets.append((getattr(manager, "AsyncCallbackManager", None), "on_llm_start", _wrap_llm_start))
        for cls, name, wrap in targets:
            if cls is None:
                continue
            original = cls.__dict__.get(name)
            if original is None or getattr(original, _MARK, None) is not None:
                continue
            setattr(cls, name, wrap(original))
            _patched.append((cls, name, original))


def uninstall() -> None:
    global _release
    with _lock:
        for cls, name, original in reversed(_patched):
            setattr(cls, name, original)
        _patched.clear()
        _release = None
