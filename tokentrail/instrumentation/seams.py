"""What the integrations need from the running tokentrail, as small typed Protocols.

Instrumentation sits below runtime (docs/architecture.md): it never imports runtime. runtime
registers the default instance's getter here (`set_current`), and every integration reads the
running instance through `current()`, typed as `Recorder`, not as the whole `Tokentrail`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from ..context import Attribution
from ..pricing import Cost
from ..usage import Usage

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import Tracer

    from ..budgets.manager import Reservation
    from ..config import Settings


class PriceSource(Protocol):
    """Prices a call (tokentrail.pricing.PriceBook): never raises; unknown is an unpriced Cost."""

    def cost(self, usage: Usage | None, model: str | None, provider: str | None, when: datetime) -> Cost: ...


class BudgetGate(Protocol):
    """Reserves a call's worst case before the provider is called (tokentrail.budgets.BudgetManager).
    `reserve` raises BudgetExceeded to block; None means no budget applies."""

    def reserve(self, attribution: Attribution, *, model: str | None, provider: str | None, prompt_tokens: int, max_output_tokens: int | None = None) -> Reservation | None: ...

    def settle(self, reservation: Reservation, cost: Cost) -> None: ...

    def release(self, reservation: Reservation) -> None: ...


class Recorder(Protocol):
    """The running tokentrail as the integrations see it (tokentrail.runtime.Tokentrail)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def prices(self) -> PriceSource: ...

    @property
    def defaults(self) -> Attribution: ...

    @property
    def tracer(self) -> Tracer: ...

    @property
    def clock(self) -> Callable[[], int]: ...  # wall clock in ns: span times and price dates

    def now_ns(self) -> int: ...

    @property
    def budgets(self) -> BudgetGate | None: ...


_current: Callable[[], Recorder] | None = None


def set_current(getter: Callable[[], Recorder]) -> None:
    """runtime registers how to get (or lazily make) the default instance."""
    global _current
    _current = getter


def current() -> Recorder:
    """The default instance (configured on first use, as tokentrail.runtime.get() does)."""
    getter = _current
    if getter is None:  # tokentrail/__init__.py imports runtime, which registers it
        raise RuntimeError("tokentrail.runtime is not loaded; import tokentrail first")
    return getter()
