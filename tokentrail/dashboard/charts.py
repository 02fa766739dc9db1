"""Altair charts, readable at a glance: money axes in $, one color per model/group.

Money arrives as Decimal and becomes float here, at the drawing edge, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import altair as alt
import pandas as pd

from .fmt import MONEY_AXIS_FORMAT, to_float

_MONEY_AXIS = alt.Axis(format=MONEY_AXIS_FORMAT, title="Spend (USD)")
_MONEY_TOOLTIP_FORMAT = "$,.6~f"


def spend_over_time(points: Sequence[Any], *, bucket: str, top: int = 8) -> alt.Chart:
    """Stacked bars of spend per time bucket and group; groups beyond `top` become 'other'."""
    totals: dict[str, Decimal] = {}
    for p in points:
        totals[p.key] = totals.get(p.key, Decimal(0)) + (p.cost_usd or Decimal(0))
    keep = {k for k, _ in sorted(totals.items(), key=lambda kv: -kv[1])[:top]}
    rows = [
        {
            "time": p.bucket.replace(tzinfo=None),
            "group": (p.key or "(not set)") if p.key in keep else "other",
            "spend": to_float(p.cost_usd),
            "calls": p.calls,
        }
        for p in points
    ]
    df = pd.DataFrame(rows, columns=["time", "group", "spend", "calls"])
    time_title = "Hour (UTC)" if bucket == "hour" else "Day (UTC)"
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X("time:T", title=time_title, timeUnit="utcyearmonthdatehours" if bucket == "hour" else "utcyearmonthdate"),
            y=alt.Y("sum(spend):Q", axis=_MONEY_AXIS),
            color=alt.Color("group:N", title="Model", sort="-y"),
            tooltip=[
                alt.Tooltip("time:T", title=time_title, format="%Y-%m-%d %H:%M" if bucket == "hour" else "%Y-%m-%d"),
                alt.Tooltip("group:N", title="Model"),
                alt.Tooltip("sum(spend):Q", title="Spend", format=_MONEY_TOOLTIP_FORMAT),
                alt.Tooltip("sum(calls):Q", title="Calls", format=","),
            ],
        )
        .properties(height=320)
    )


def bars(labels: Sequence[str], values: Sequence[Decimal | None], *, title: str, top: int = 20) -> alt.Chart:
    """Horizontal bars, largest first (a breakdown's spend per group)."""
    df = pd.DataFrame(
        {"group": [label or "(not set)" for label in labels][:top], "spend": [to_float(v) for v in values][:top]}
    )
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X("spend:Q", axis=_MONEY_AXIS),
            y=alt.Y("group:N", sort="-x", title=title),
            tooltip=[alt.Tooltip("group:N", title=title), alt.Tooltip("spend:Q", title="Spend", format=_MONEY_TOOLTIP_FORMAT)],
        )
        .properties(height=max(120, 24 * len(df)))
    )


def burn(
    actual: Sequence[tuple[datetime, Decimal]],
    forecast: Sequence[tuple[datetime, Decimal]],
    *,
    limit: Decimal | None = None,
) -> alt.LayerChart | alt.FacetChart:
    """Cumulative spend (solid), its forecast to the period's end (dashed), the limit (red rule)."""
    rows = [{"time": t.replace(tzinfo=None), "spend": to_float(v), "series": "Spent"} for t, v in actual]
    rows += [{"time": t.replace(tzinfo=None), "spend": to_float(v), "series": "Forecast"} for t, v in forecast]
    df = pd.DataFrame(rows, columns=["time", "spend", "series"])
    line = (
        alt.Chart(df)
        .mark_line(point=True)
        .encode(
            x=alt.X("time:T", title="Day (UTC)"),
            y=alt.Y("spend:Q", axis=_MONEY_AXIS),
            color=alt.Color(
                "series:N",
                title=None,
                scale=alt.Scale(domain=["Spent", "Forecast"], range=["#1f77b4", "#ff7f0e"]),
            ),
            strokeDash=alt.StrokeDash(
                "series:N", scale=alt.Scale(domain=["Spent", "Forecast"], range=[[1, 0], [6, 4]]), legend=None
            ),
            tooltip=[
                alt.Tooltip("time:T", title="Time", format="%Y-%m-%d %H:%M"),
                alt.Tooltip("series:N", title="Series"),
                alt.Tooltip("spend:Q", title="Cumulative", format=_MONEY_TOOLTIP_FORMAT),
            ],
        )
    )
    layers: list[alt.Chart] = [line]
    if limit is not None:
        rule = alt.Chart(pd.DataFrame({"limit": [to_float(limit)], "label": ["Limit"]})).mark_rule(
            color="#d62728", strokeWidth=2
        ).encode(y=alt.Y("limit:Q", axis=_MONEY_AXIS), tooltip=[alt.Tooltip("limit:Q", title="Limit", format="$,.2f")])
        layers.append(rule)
    return alt.layer(*layers).properties(height=320)


def waterfall(spans: Sequence[Any]) -> alt.Chart:
    """A trace's spans on a time line, one row per span in tree order."""
    if not spans:
        return alt.Chart(pd.DataFrame({"x": []})).mark_bar()
    t0 = min(s.start for s in spans)
    rows = []
    for i, s in enumerate(spans):
        offset = (s.start - t0).total_seconds() * 1000
        rows.append(
            {
                "order": i,
                "span": f"{i + 1:>3}. {'· ' * s.depth}{s.name}",
                "start_ms": offset,
                "end_ms": offset + max(s.duration_ms, 0.5),
                "duration_ms": s.duration_ms,
                "operation": s.operation or "span",
                "cost": to_float(s.cost_usd),
                "status": s.status,
            }
        )
    df = pd.DataFrame(rows)
    return (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X("start_ms:Q", title="Milliseconds since the trace started"),
            x2="end_ms:Q",
            y=alt.Y("span:N", sort=alt.EncodingSortField("order"), title=None, axis=alt.Axis(labelLimit=360)),
            color=alt.Color("operation:N", title="Operation"),
            tooltip=[
                alt.Tooltip("span:N", title="Span"),
                alt.Tooltip("duration_ms:Q", title="Latency (ms)", format=",.1f"),
                alt.Tooltip("cost:Q", title="Cost", format=_MONEY_TOOLTIP_FORMAT),
                alt.Tooltip("status:N", title="Status"),
            ],
        )
        .properties(height=max(120, 22 * len(df)))
    )
