"""Attaching a run's span as the current OpenTelemetry context, and taking it off again safely.

A callback system gives no `with` block. A run's start and end callbacks may run in different
contexts (LangChain's abatch starts and ends runs in short-lived tasks; a stream may be consumed
in another thread or finalised by the garbage collector), and runs may end out of order
(`batch` starts every input's root run, then ends them in turn; streams interleaved with zip).
Resetting a ContextVar token there either fails (a token belongs to the Context that made it)
or, worse, restores a value from under a context someone else attached later. So:

- every context we attach carries a link: (its span, the context that was current before);
- a context is detached only where it is still the current one (last in, first out); after
  that, any context of ours now current whose span has already ended is taken off as well;
- a context that is not current at its run's end is left alone: either something attached
  above it will come off later (and the rule above then takes ours off), or it was never
  attached in this Context (then there is nothing to undo);
- `effective_parent()` skips contexts of ours whose span has ended, and the contexts of our
  *root* runs: a run LangChain starts without a parent is a root, and sibling roots (the
  inputs of a batch) must not nest under one another.
- `heal()`, called by every start callback, takes off contexts of ours whose span has ended.
  That is the one remedy for an async stream abandoned half way: LangChain closes its inner
  generators from the garbage collector's task, a copy of the caller's context, so the
  caller's own context keeps the stream's span until the next run starts there.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.trace import Span

from .. import otel_context as shared
from ..spans import SPAN_KEY as _SPAN_KEY

_LINK_KEY = otel_context.create_key("tokentrail-context-link")
_get_current: Any = shared.get_current
_reset: Any = shared.CURRENT.reset if shared.CURRENT is not None else None

# The attribution of the framework run a context belongs to: calls that get no callbacks
# (LangChain embeddings) read it to be attributed like the run they happen in.
ATTRIBUTION_KEY = otel_context.create_key("tokentrail-attribution")


def current_run_attribution() -> Any:
    """The Attribution of the innermost instrumented run around this call, or None."""
    return otel_context.get_value(ATTRIBUTION_KEY)


class _Link(NamedTuple):
    span: Span
    prev: Context
    root: bool


def _link(ctx: Context) -> _Link | None:
    """The link of ctx when ctx is one of ours (its current span is the linked one)."""
    # Context is typed dict[str, object]; only a _Link is ever stored under this private key
    link: _Link | None = ctx.get(_LINK_KEY)  # type: ignore[assignment]
    if link is not None and ctx.get(_SPAN_KEY) is link.span:
        return link
    return None


def _ended(span: Span) -> bool:
    return not span.is_recording()


def context_for(span: Span, base: Context, *, root: bool, attribution: Any) -> Context:
    """The context to attach for a run's span: base + the run's attribution + the span + its
    link back to the context current now (what set_value and set_span_in_context make, in one
    copy instead of three)."""
    return Context(
        {**base, ATTRIBUTION_KEY: attribution, _SPAN_KEY: span, _LINK_KEY: _Link(span, _get_current(), root)}
    )


attach: Any = shared.attach  # Context -> token


def detach(ctx: Context, token: object) -> None:
    """Take ctx off if it is the current context (see the module docstring)."""
    cur = _get_current()
    if cur is not ctx:
        return
    try:
        # shared.detach inlined: this runs at the end of every run
        if _reset is not None:
            _reset(token)
        else:  # pragma: no cover - another runtime context
            otel_context.detach(token)  # type: ignore[arg-type]
    except (ValueError, RuntimeError):  # a token from another Context: handled here
        # a copy of the Context that attached it (the token belongs to the original):
        # attaching the previous context restores the same value here
        link = _link(ctx)
        if link is not None:
            otel_context.attach(link.prev)
    # contexts of ours left covered by this one, whose runs have ended since
    cur = _get_current()
    if _LINK_KEY not in cur:
        return
    for _ in range(10_000):
        link = _link(cur)
        if link is None or link.span.is_recording():
            return
        otel_context.attach(link.prev)
        cur = link.prev


def heal() -> None:
    """Take off contexts of ours whose span has ended (cheap when there are none)."""
    cur = _get_current()
    if _LINK_KEY not in cur:
        return
    link = _link(cur)
    if link is None or link.span.is_recording():
        return
    for _ in range(10_000):
        otel_context.attach(link.prev)
        link = _link(link.prev)
        if link is None or link.span.is_recording():
            return


def live_current() -> Context:
    """The current context, less contexts of ours whose span has ended."""
    cur = _get_current()
    for _ in range(10_000):
        link = _link(cur)
        if link is None or not _ended(link.span):
            break
        cur = link.prev
    return cur


def effective_parent() -> Context:
    """The context a run without a known parent starts in: the current one, less our ended
    spans and our root runs' spans."""
    cur = _get_current()
    for _ in range(10_000):
        link = _link(cur)
        if link is None or not (link.root or _ended(link.span)):
            break
        cur = link.prev
    return cur
