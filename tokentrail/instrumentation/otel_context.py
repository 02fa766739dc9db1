"""Attaching and detaching the current OpenTelemetry context, through public API only.

OTel's `context.attach` returns the token of the ContextVar its runtime context sets; that token's
`var` (public `contextvars.Token.var`) is the ContextVar itself, found once here without reaching
into OTel's private `_RUNTIME_CONTEXT`. Reading and setting it directly saves two calls a use on
the path of every span, and resetting it lets a failed reset (a token from another Context: a
callback ending a run in a copy of the Context that started it) be handled quietly, where the
public `context.detach` logs an ERROR with a traceback for what is, here, an expected case.
With another runtime context (no ContextVar token), the public functions are used.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.context import Context

__all__ = ["CURRENT", "attach", "detach", "get_current"]


def _find_var() -> ContextVar[Context] | None:
    token = otel_context.attach(otel_context.get_current())
    var = getattr(token, "var", None) if isinstance(token, Token) else None
    otel_context.detach(token)
    return var if isinstance(var, ContextVar) else None


CURRENT: ContextVar[Context] | None = _find_var()
get_current: Callable[[], Context] = CURRENT.get if CURRENT is not None else otel_context.get_current
attach: Callable[[Context], Any] = CURRENT.set if CURRENT is not None else otel_context.attach  # -> token


def detach(token: Any) -> bool:
    """Reset the current context to what it was before `token`'s attach; False, quietly, when
    the token cannot be reset here (made in another Context, or used already)."""
    if CURRENT is None:  # pragma: no cover - another runtime context: its own detach rules
        otel_context.detach(token)
        return True
    try:
        CURRENT.reset(token)
    except (ValueError, RuntimeError):  # a token from another Context, or reset already: nothing to undo
        return False
    return True
