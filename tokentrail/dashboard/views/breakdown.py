"""Breakdown: spend by any attribution field, with a CSV download."""

from __future__ import annotations

from typing import cast

import streamlit as st

from tokentrail.dashboard import charts, data, state, ui

BY_LABELS: dict[str, str] = {
    "model": "Model",
    "provider": "Provider",
    "team": "Team",
    "feature": "Feature",
    "user": "User",
    "project": "Project",
    "environment": "Environment",
    "session": "Session",
    "tag": "Tag",
    "operation": "Operation",
    "response_model": "Response model",
    "status": "Status",
    "error_type": "Error type",
    "cost_status": "Cost status",
    "framework": "Framework",
    "service": "Service",
    "day": "Day (UTC)",
}

view = ui.view()
st.title("Breakdown")

keys = [k for k in BY_LABELS if k in data.queries.BREAKDOWN_BY]
if "tt_by" not in st.session_state:
    wanted = state.page_param("by", "model")
    st.session_state["tt_by"] = wanted if wanted in keys else "model"
# one of keys (with python_version 3.10, mypy matches streamlit's empty-options overload)
by = cast(str, st.selectbox("Group by", keys, format_func=BY_LABELS.__getitem__, key="tt_by"))
state.set_page_param("by", None if by == "model" else by)
st.caption(f"Model calls by {BY_LABELS[by].lower()} · {view.describe()}")

try:
    rows = data.load("breakdown", by, view.filters)
except data.StoreUnavailable as e:
    ui.stop_on_error(e)
if not rows:
    ui.no_match(view)
    st.stop()

if by == "tag":
    st.caption("A call with several tags counts under each of them; shares can add up to more than 100%.")
if by != "day":
    st.altair_chart(
        charts.bars([r.key for r in rows], [r.cost_usd for r in rows], title=BY_LABELS[by]), width="stretch"
    )
frame = ui.report_frame(rows, by)
ui.table(frame, config={by: st.column_config.TextColumn(BY_LABELS[by]), **ui.REPORT_CONFIG})
st.download_button(
    "Download CSV",
    ui.csv_bytes(frame),
    file_name=f"tokentrail-spend-by-{by}.csv",
    mime="text/csv",
    icon=":material/download:",
)
