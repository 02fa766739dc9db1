"""`tokentrail budgets`: each budget (each scope value of a per-value budget) with spent, limit,
% used, the forecast of the period's spend and the date it runs out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from .. import clock
from .status import BudgetStatus, allowance_text, fmt_usd, status

__all__ = ["budgets_command", "budgets_table"]

_STATE_STYLE = {"ok": "green", "warning": "yellow", "exceeded": "bold red"}


def _when(d: datetime | None, tz: str) -> str:
    if d is None:
        return "-"
    from .periods import _zone

    return d.astimezone(_zone(tz)).strftime("%Y-%m-%d %H:%M")


def _runs_out(s: BudgetStatus, tz: str) -> str:
    if s.state == "exceeded":
        return "exhausted"
    if s.exhausts_at is not None:
        return _when(s.exhausts_at, tz)
    if s.spent_usd == 0:
        return "-"
    return "not this period" if s.period_end is not None else "-"


def budgets_table(statuses: list[BudgetStatus], timezones: dict[str, str]) -> Table:
    table = Table(title="Budgets", title_justify="left")
    extra = any(allowance_text(s) != "-" for s in statuses)  # the column only where it says something
    for col, justify in (
        ("Budget", "left"),
        ("Scope", "left"),
        ("Period", "left"),
        ("Spent", "right"),
        ("Limit", "right"),
        ("Used", "right"),
        ("Forecast", "right"),
        ("Runs out", "left"),
        ("Action", "left"),
        *((("Carry, loans, overage", "left"),) if extra else ()),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for s in statuses:
        tz = timezones.get(s.budget, "UTC")
        if s.period_end is not None and s.period_start is not None:
            period = f"{s.period} from {_when(s.period_start, tz)[:10]}"
        else:
            period = "total" if s.period == "total" else f"last {s.period}"
        used = "-" if s.effective_limit_usd <= 0 else f"{s.used:.0%}"
        table.add_row(
            s.budget,
            s.scope_value or "(all)",
            period,
            f"${fmt_usd(s.spent_usd)}",
            f"${fmt_usd(s.limit_usd)}",
            f"[{_STATE_STYLE[s.state]}]{used}[/]",
            "-" if s.forecast_usd is None else f"${fmt_usd(s.forecast_usd)}" + (" (over)" if s.forecast_over else ""),
            _runs_out(s, tz),
            s.action,
            *((allowance_text(s),) if extra else ()),
        )
    return table


def budgets_command(settings: Any, console: Console, now: datetime | None = None) -> int:
    """Print every configured budget as the store sees it; 0 on success. Store errors
    (ConfigError, the store lock) propagate to the CLI, which prints them in one line."""
    budgets = list(getattr(settings, "budgets", ()) or ())
    if not budgets:
        where = settings.config_file or "tokentrail.toml"
        console.print(f"no budgets configured; add a [[budgets]] table to {where}, e.g.")
        console.print('  [[budgets]]\n  name = "monthly"\n  limit_usd = 100\n  period = "month"', markup=False)
        return 0
    from ..store import open_store

    with open_store(settings, lock_timeout=30.0) as store:
        rows = status(store, settings, now or clock.now())
    console.print(budgets_table(rows, {b.name: b.timezone for b in budgets}))
    console.print(
        "spend as the store holds it (flushed by every process); forecast: this period's rate carried to its end",
        style="dim",
    )
    return 0
