"""Traces: the most expensive traces, and one trace's span tree with tokens, cost and latency."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import streamlit as st

from tokentrail.dashboard import charts, data, fmt, state, ui

view = ui.view()
st.title("Traces")
st.caption(f"Most expensive traces (their matching model calls' cost) · {view.describe()}")

try:
    traces = data.load("top_traces", view.filters, limit=50)
except data.StoreUnavailable as e:
    ui.stop_on_error(e)
if not traces:
    ui.no_match(view)
    st.stop()

listing = pd.DataFrame(
    [
        {
            "trace_id": t.trace_id,
            "start": t.start.replace(tzinfo=None),
            "root": t.root_name,
            "cost_usd": t.cost_usd,
            "calls": t.calls,
            "input_tokens": t.input_tokens,
            "output_tokens": t.output_tokens,
            "errors": t.errors,
            "spans": t.spans,
            "duration_ms": t.duration_ms,
            "user": t.user_id,
            "feature": t.feature,
        }
        for t in traces
    ]
)
ui.table(
    listing,
    config={
        "trace_id": st.column_config.TextColumn("Trace", width="small"),
        "start": st.column_config.DatetimeColumn("Start (UTC)", format="YYYY-MM-DD HH:mm:ss"),
        "root": "Root span",
        "cost_usd": st.column_config.NumberColumn("Cost", format="$%.6f"),
        "calls": st.column_config.NumberColumn("Model calls"),
        "input_tokens": st.column_config.NumberColumn("Input tokens", format="localized"),
        "output_tokens": st.column_config.NumberColumn("Output tokens", format="localized"),
        "errors": "Errors",
        "spans": "Spans",
        "duration_ms": st.column_config.NumberColumn("Latency (ms)", format="%.0f"),
        "user": "User",
        "feature": "Feature",
    },
)

ids = [t.trace_id for t in traces]
labels = {t.trace_id: f"{fmt.usd(t.cost_usd)} · {t.root_name or t.trace_id[:12]} · {t.start:%Y-%m-%d %H:%M}" for t in traces}
linked = state.page_param("trace")
if linked and linked not in labels:
    # a linked trace that is not in this list (other filters, older): still openable
    ids.insert(0, linked)
    labels[linked] = f"{linked} (linked)"
if st.session_state.get("tt_trace") not in ids:
    st.session_state["tt_trace"] = linked if linked in ids else ids[0]
trace_id = st.selectbox("Trace", ids, format_func=labels.__getitem__, key="tt_trace")
state.set_page_param("trace", trace_id)

spans = data.load("trace_spans", trace_id)
if not spans:
    st.warning(f"Trace {trace_id} has no spans in the store.")
    st.stop()

cost = sum((s.cost_usd for s in spans if s.cost_usd is not None), Decimal(0))
priced = any(s.cost_usd is not None for s in spans)
start = min(s.start for s in spans)
end = max(s.start.timestamp() * 1000 + s.duration_ms for s in spans)
m1, m2, m3, m4, m5 = st.columns(5)
m1.metric("Trace cost", fmt.usd(cost if priced else None))
m2.metric("Input tokens", fmt.count(sum(s.input_tokens for s in spans)))
m3.metric("Output tokens", fmt.count(sum(s.output_tokens for s in spans)))
m4.metric("Latency", fmt.ms(end - start.timestamp() * 1000))
m5.metric("Spans", fmt.count(len(spans)))
st.caption(f"Trace id `{trace_id}` · started {start:%Y-%m-%d %H:%M:%S} UTC")

st.altair_chart(charts.waterfall(spans), width="stretch")
tree = pd.DataFrame(
    [
        {
            "span": ("│  " * (s.depth - 1) + "└─ " if s.depth else "") + s.name,
            "operation": s.operation,
            "model": s.model,
            "input_tokens": s.input_tokens,
            "output_tokens": s.output_tokens,
            "cache_read_tokens": s.cache_read_tokens,
            "cost_usd": s.cost_usd,
            "latency_ms": s.duration_ms,
            "ttft_ms": s.time_to_first_token_ms,
            "status": s.status if not s.error_type else f"{s.status}: {s.error_type}",
            "cost_status": s.cost_status,
            "span_id": s.span_id,
        }
        for s in spans
    ]
)
ui.table(
    tree,
    config={
        "span": st.column_config.TextColumn("Span", width="large"),
        "operation": "Operation",
        "model": "Model",
        "input_tokens": st.column_config.NumberColumn("Input tokens", format="localized"),
        "output_tokens": st.column_config.NumberColumn("Output tokens", format="localized"),
        "cache_read_tokens": st.column_config.NumberColumn("Cache-read", format="localized"),
        "cost_usd": st.column_config.NumberColumn("Cost", format="$%.6f"),
        "latency_ms": st.column_config.NumberColumn("Latency (ms)", format="%.1f"),
        "ttft_ms": st.column_config.NumberColumn("First token (ms)", format="%.1f"),
        "status": "Status",
        "cost_status": "Cost status",
        "span_id": "Span id",
    },
)
