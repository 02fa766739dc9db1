"""Budgets that stop spending before it happens (SPEC §7).

    tokentrail.configure(budgets=[tokentrail.Budget(name="search-team", limit_usd=100,
                                                    period="month", scope={"team": "search"})])

`Budget` is the definition; `BudgetManager` (built by the runtime when budgets are configured)
reserves a call's worst case before the provider is called and settles its real cost after;
`status()` gives the figures the CLI and the dashboard show.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .model import DEFAULT_MAX_OUTPUT_TOKENS, SCOPE_FIELDS, Budget, coerce_budgets
from .periods import PERIODS

if TYPE_CHECKING:
    from .alerts import BudgetEvent, add_alert_handler
    from .manager import BudgetManager, Reservation
    from .status import BudgetStatus, burndown, recent_events, status

__all__ = [
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "PERIODS",
    "SCOPE_FIELDS",
    "Budget",
    "BudgetEvent",
    "BudgetManager",
    "BudgetStatus",
    "Reservation",
    "add_alert_handler",
    "burndown",
    "coerce_budgets",
    "recent_events",
    "status",
]

# config.py imports this package to validate budgets: keep that import light (no store, no
# threads) and load the rest on first use.
_LAZY = {
    "BudgetEvent": "alerts",
    "add_alert_handler": "alerts",
    "BudgetManager": "manager",
    "Reservation": "manager",
    "BudgetStatus": "status",
    "burndown": "status",
    "recent_events": "status",
    "status": "status",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'tokentrail.budgets' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value
