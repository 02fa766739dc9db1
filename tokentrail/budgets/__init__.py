"""Budgets that stop spending before it happens (README.md, "Budgets").

    tokentrail.configure(budgets=[tokentrail.Budget(name="search-team", limit_usd=100,
                                                    period="month", scope={"team": "search"})])

`Budget` is the definition; `BudgetManager` (built by the runtime when budgets are configured)
reserves a call's worst case before the provider is called and settles its real cost after;
`tokentrail.budgets.status.status()` (also `budget_status`) gives the figures the CLI and the
dashboard show.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .model import DEFAULT_MAX_OUTPUT_TOKENS, SCOPE_FIELDS, Budget, coerce_budgets
from .periods import PERIODS

if TYPE_CHECKING:
    from .alerts import BudgetEvent, add_alert_handler
    from .instances import Reservation
    from .manager import BudgetManager
    from .status import BudgetStatus, burndown, recent_events
    from .status import status as budget_status

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
    "budget_status",
    "burndown",
    "coerce_budgets",
    "recent_events",
]

# config.py imports this package to validate budgets: keep that import light (no store, no
# threads) and load the rest on first use.
# (`status` is the submodule's name, so its function is exported as budget_status)
_LAZY = {
    "BudgetEvent": ("alerts", "BudgetEvent"),
    "add_alert_handler": ("alerts", "add_alert_handler"),
    "BudgetManager": ("manager", "BudgetManager"),
    "Reservation": ("instances", "Reservation"),
    "BudgetStatus": ("status", "BudgetStatus"),
    "budget_status": ("status", "status"),
    "burndown": ("status", "burndown"),
    "recent_events": ("status", "recent_events"),
}


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'tokentrail.budgets' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{where[0]}"), where[1])
    globals()[name] = value
    return value
