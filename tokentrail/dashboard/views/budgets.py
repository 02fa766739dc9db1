"""Budgets: spent vs limit, burn-down with the forecast line, exhaustion date, budget events."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import streamlit as st

from tokentrail.budgets.status import allowance_text
from tokentrail.dashboard import charts, data, fmt, state, ui
from tokentrail.errors import format_usd

BUDGET_EXAMPLE = """\
# tokentrail.toml
[[budgets]]
name = "search-team"
limit_usd = 100
period = "month"            # day | week | month | total | 24h | 7d | 30d
scope = { team = "search" } # "*" as a value: one budget per user, team, ...
warn_at = [0.5, 0.8, 0.95]
action = "block"            # or "warn"
"""

view = ui.view()
st.title("Budgets")
now = state.now()

try:
    statuses = data.load("budget_status", now=now)
except data.StoreUnavailable as e:
    ui.stop_on_error(e)

if not statuses:
    st.info(
        "No budget is configured. Budgets live in tokentrail.toml (or `tokentrail.configure(budgets=[...])` "
        "in your application); the dashboard reads the same tokentrail.toml.",
        icon=":material/savings:",
    )
    st.code(BUDGET_EXAMPLE, language="toml")
else:
    st.caption("Each budget in its current period, as the store sees it (what every process has flushed).")
    summary = pd.DataFrame(
        [
            {
                "budget": s.budget,
                "scope": s.scope_value,
                "period": s.period,
                "action": s.action,
                "spent_usd": s.spent_usd,
                "limit_usd": s.limit_usd,
                "used_pct": min(s.used * 100, 100.0),
                # empty cells read as a dash, not "None"
                "forecast_usd": "-" if s.forecast_usd is None else f"${format_usd(s.forecast_usd)}",
                "forecast": "over the limit" if s.forecast_over else "-",
                "runs_out": f"{s.exhausts_at:%Y-%m-%d %H:%M}" if s.exhausts_at else "-",
                "state": s.state,
                "allowance": allowance_text(s),
            }
            for s in statuses
        ]
    )
    if (summary["allowance"] == "-").all():  # no budget has a carry, a loan or an allowance
        summary = summary.drop(columns=["allowance"])
    ui.table(
        summary,
        config={
            "budget": "Budget",
            "scope": "Scope value",
            "period": "Period",
            "action": "Action",
            "spent_usd": st.column_config.NumberColumn("Spent", format="$%.4f"),
            "limit_usd": st.column_config.NumberColumn("Limit", format="$%.2f"),
            "used_pct": st.column_config.ProgressColumn("Used", format="%.1f%%", min_value=0, max_value=100),
            "forecast_usd": "Forecast at period end",
            "forecast": "Forecast alert",
            "runs_out": "Runs out (UTC)",
            "state": "State",
            "allowance": "Carry, loans, overage",
        },
    )

    def _label(i: int) -> str:
        s = statuses[i]
        scope = f" [{s.scope_value}]" if s.scope_value else ""
        return f"{s.budget}{scope} · {s.period}"

    choice = st.selectbox("Burn-down of", list(range(len(statuses))), format_func=_label, key="tt_budget")
    s = statuses[choice if choice is not None else 0]
    b1, b2, b3, b4 = st.columns(4)
    b1.metric("Spent", fmt.usd(s.spent_usd))
    b2.metric("Limit", fmt.usd(s.limit_usd))
    b3.metric("Forecast at period end", fmt.usd(s.forecast_usd))
    if s.state == "exceeded":
        runs_out = "exceeded"
    elif s.exhausts_at is not None:
        runs_out = f"{s.exhausts_at:%Y-%m-%d %H:%M}"
    else:
        runs_out = "not this period" if s.period_end else "—"
    b4.metric("Runs out (UTC)", runs_out)
    st.progress(min(s.used, 1.0), text=f"{fmt.pct(s.spent_usd, s.limit_usd)} of the limit used · state: {s.state}")

    scope_value = s.scope_value if s.scope_value not in ("", "*") else ""
    points = data.load("budget_burndown", s.budget, scope_value, now=now)
    actual = list(points)
    if s.period_start is not None:
        actual.insert(0, (s.period_start, Decimal(0)))
    if actual:
        actual.append((now, s.spent_usd))
    projection = []
    if s.forecast_usd is not None and s.period_end is not None:
        projection = [(now, s.spent_usd), (s.period_end, s.forecast_usd)]
    st.altair_chart(charts.burn(actual, projection, limit=s.limit_usd), width="stretch")
    st.caption(
        "Solid: spent so far this period. Dashed: the forecast at the rate so far. Red: the limit. "
        "Rolling and total budgets have no period end, hence no forecast line."
    )

st.subheader("Budget events")
events = data.load("budget_events", since=view.since, limit=200)
if not events:
    st.caption(f"No budget event ({view.describe()}): warnings, blocks and resets appear here.")
else:
    frame = pd.DataFrame(events)
    columns = [c for c in ("timestamp", "budget", "scope_value", "event", "threshold", "spent_usd", "limit_usd", "estimated_cost_usd", "model", "message") if c in frame.columns]
    ui.table(
        frame[columns],
        config={
            "timestamp": st.column_config.DatetimeColumn("Time (UTC)", format="YYYY-MM-DD HH:mm:ss"),
            "spent_usd": st.column_config.NumberColumn("Spent", format="$%.4f"),
            "limit_usd": st.column_config.NumberColumn("Limit", format="$%.2f"),
            "estimated_cost_usd": st.column_config.NumberColumn("Call estimate", format="$%.6f"),
        },
    )
