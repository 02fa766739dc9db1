"""The demo's budgets: a config file in the tokentrail home, and enforcement on the demo clock.

`tokentrail demo` writes `$TOKENTRAIL_HOME/demo.toml` (`write_demo_config`) when no
tokentrail.toml of the user's is in use, and runs its traffic with it, so the budget features
(warnings, blocks, a LangChain fallback on `BudgetExceeded`, resets) show up in the store, in
`tokentrail budgets` and on the dashboard's Budgets page. The limits are sized against the
demo's own spend (about $4.15 for the default 1,500 calls over 14 days; scaled for other
`--days` / `--calls`):

    acme-monthly     all spend, calendar month, warn          ~70% used: the 50% warning fires
    support-team     team=support, rolling 30 days, block     ~88% used: 50% and 80% warnings
    per-user-daily   user_id="*", calendar day, warn          heavy users cross 50%, some 100%
    summarize-daily  feature=summarize, calendar day, block   refuses claude-3-5-haiku on busy
                     days; the chain falls back to gemini-2.0-flash

`BudgetSync` keeps the budget manager's view equal to the store's while the demo fast-forwards
through two weeks in seconds (see its docstring).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from ..budgets.periods import CALENDAR, window

__all__ = [
    "DEFAULT_CALLS",
    "DEFAULT_DAYS",
    "DEMO_CONFIG_NAME",
    "BudgetSync",
    "DemoBudget",
    "demo_budgets",
    "demo_config_text",
    "start_budget_sync",
    "write_demo_config",
]

DEMO_CONFIG_NAME = "demo.toml"
DEFAULT_DAYS = 14
DEFAULT_CALLS = 1500


@dataclass(frozen=True)
class DemoBudget:
    """One `[[budgets]]` table of demo.toml; `limit_usd` for the default demo (14 days, 1,500
    calls), `per_day`: the limit is a daily one (scaled by calls a day, else by calls)."""

    name: str
    limit_usd: Decimal
    period: str
    scope: tuple[tuple[str, str], ...]
    action: str
    warn_at: tuple[float, ...]
    comment: str
    per_day: bool = False


BUDGETS: tuple[DemoBudget, ...] = (
    DemoBudget(
        "acme-monthly", Decimal(6), "month", (), "warn", (0.5, 0.8),
        "the whole LLM bill this calendar month: alert finance, never block",
    ),
    DemoBudget(
        "support-team", Decimal(3), "30d", (("team", "support"),), "block", (0.5, 0.8, 0.95),
        "the support team's spend over the last 30 days (claude-sonnet-4 chat): close to its limit",
    ),
    DemoBudget(
        "per-user-daily", Decimal("0.10"), "day", (("user_id", "*"),), "warn", (0.5, 0.8),
        "one budget per user and day: flag heavy users without cutting customers off",
        per_day=True,
    ),
    DemoBudget(
        "summarize-daily", Decimal("0.035"), "day", (("feature", "summarize"),), "block", (0.8,),
        "claude-3-5-haiku summaries: refused when the day's budget cannot take the call's worst case; "
        "the chain falls back to gemini-2.0-flash",
        per_day=True,
    ),
)  # fmt: skip


def _two_figures(d: Decimal) -> Decimal:
    """Round to two significant figures (a limit a person would write)."""
    if d <= 0:
        return Decimal("0.01")
    return d.quantize(Decimal(1).scaleb(d.adjusted() - 1), rounding=ROUND_HALF_EVEN)


def demo_budgets(days: int = DEFAULT_DAYS, calls: int = DEFAULT_CALLS) -> list[dict[str, Any]]:
    """The demo's budgets as `[[budgets]]` tables, limits scaled to `days` and `calls`: by the
    calls a day for daily budgets, by the calls a 30-day window holds for the others. The
    default demo gets the limits of `BUDGETS` exactly."""
    if days < 1 or calls < 1:
        raise ValueError("days and calls must be at least 1")
    per_day = (Decimal(calls) * DEFAULT_DAYS) / (Decimal(days) * DEFAULT_CALLS)
    in_window = Decimal(calls) * min(days, 30) / (Decimal(days) * DEFAULT_CALLS)
    out: list[dict[str, Any]] = []
    for b in BUDGETS:
        factor = per_day if b.per_day else in_window
        limit = b.limit_usd if factor == 1 else _two_figures(b.limit_usd * factor)
        out.append(
            {
                "name": b.name,
                "limit_usd": limit,
                "period": b.period,
                "scope": dict(b.scope),
                "action": b.action,
                "warn_at": list(b.warn_at),
            }
        )
    return out


def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a TOML basic string


def demo_config_text(home: Path, days: int = DEFAULT_DAYS, calls: int = DEFAULT_CALLS) -> str:
    comments = {b.name: b.comment for b in BUDGETS}
    lines = [
        "# Written by `tokentrail demo` (and rewritten on every run): the demo's budgets,",
        f"# sized for its traffic (--days {days} --calls {calls}). tokentrail reads this file only when",
        "# told to, e.g.",
        f"#   TOKENTRAIL_CONFIG={home / DEMO_CONFIG_NAME} tokentrail budgets",
        "# Your own settings belong in tokentrail.toml (working directory) or TOKENTRAIL_CONFIG.",
        "",
        f"home = {_toml_str(str(home))}",
    ]
    for table in demo_budgets(days, calls):
        scope = ", ".join(f"{k} = {_toml_str(v)}" for k, v in table["scope"].items())
        lines += [
            "",
            f"# {comments[table['name']]}",
            "[[budgets]]",
            f"name = {_toml_str(table['name'])}",
            f"limit_usd = {table['limit_usd']:f}",
            f"period = {_toml_str(table['period'])}",
            f"scope = {{ {scope} }}" if scope else "scope = {}",
            f"action = {_toml_str(table['action'])}",
            f"warn_at = [{', '.join(str(t) for t in table['warn_at'])}]",
        ]
    return "\n".join(lines) + "\n"


def write_demo_config(home: Path, days: int = DEFAULT_DAYS, calls: int = DEFAULT_CALLS) -> Path:
    """Write `<home>/demo.toml` (the demo's own file: replaced on every run); returns its path."""
    home = Path(home).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    path = home / DEMO_CONFIG_NAME
    tmp = path.with_name(f".{DEMO_CONFIG_NAME}.tmp")
    tmp.write_text(demo_config_text(home, days, calls), encoding="utf-8")
    tmp.replace(path)
    return path


class BudgetSync:
    """Keeps a budget manager's view equal to the store's while the demo clock jumps around.

    A manager adds its own unflushed spend to what the store held at its last refresh, and a
    calendar period starts empty when the clock enters it. The demo's clock goes back in time
    twice: requests get a few minutes of jitter (around midnight, back into the day before),
    and the LlamaIndex traffic replays the window after the LangChain traffic. Re-entering a
    period the manager has left would then forget what was spent in it. So before every
    request that re-enters a calendar period, `on_request` delivers the queued events and
    refreshes the manager from the store (flushing this process's spans first); a period seen
    for the first time needs nothing. The periodic refresh on the wall clock (every 30 s) is
    not used: the demo's manager runs without its thread, which keeps the demo deterministic.
    """

    def __init__(self, manager: Any, budgets: Sequence[Any]) -> None:
        self.manager = manager
        self._calendar = [(b.period, b.timezone) for b in budgets if b.period in CALENDAR]
        self._seen: list[set[int]] = [set() for _ in self._calendar]
        self.refreshes = 0

    def on_request(self, before_ns: int, now_ns: int) -> None:
        """The clock moved from `before_ns` (the end of the last request) to `now_ns` (the next one)."""
        stale = False
        for (period, tz), seen in zip(self._calendar, self._seen, strict=True):
            was = window(period, tz, before_ns).key
            key = was if before_ns == now_ns else window(period, tz, now_ns).key
            seen.add(was)
            if key != was and key in seen:
                stale = True
            seen.add(key)
        if stale:
            # deliver the queued events first: the refresh reads which warnings already fired,
            # and a warning it does not find fires again. (deliver, not flush: flush would also
            # announce, as a new period, the period the clock is back in, for every budget)
            self.manager.deliver()
            self.manager.refresh()
            self.refreshes += 1


def start_budget_sync(rt: Any) -> BudgetSync | None:
    """The budget manager of `rt` (the default instance, its clock already the demo's), built
    without a background thread and loaded from the store, in a `BudgetSync`; None when no
    budget is configured."""
    if not rt.settings.budgets:
        return None
    # no thread refreshing on the wall clock (see BudgetSync)
    manager = rt.budgets_without_thread()
    if manager is None:
        return None
    manager.refresh()  # what earlier runs left in the store for the demo's first periods
    return BudgetSync(manager, rt.settings.budgets)
