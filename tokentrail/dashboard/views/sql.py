"""SQL: a read-only editor over the store, with examples, results and a CSV download.

The statement runs through tokentrail.queries.run_sql with ClickHouse's readonly setting, so
the server itself refuses any write: an INSERT, ALTER or DROP gets a clear message and changes
nothing. The user-SQL limits (time, memory, result rows; Settings.sql_max_*) apply here too: a
runaway query stops with a one-line error naming the limit, and the store is free again.
"""

from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from tokentrail.dashboard import data, ui

MAX_ROWS = 10_000

EXAMPLES: dict[str, str] = {
    "Spend by model, last 7 days": """SELECT request_model AS model,
       count() AS calls,
       sum(input_tokens) AS input_tokens,
       sum(output_tokens) AS output_tokens,
       sum(cost_usd) AS spend_usd
FROM tokentrail.spans
WHERE operation IN ('chat', 'text_completion', 'embeddings')
  AND timestamp >= now() - INTERVAL 7 DAY
GROUP BY model
ORDER BY spend_usd DESC""",
    "Daily spend": """SELECT toDate(timestamp) AS day, sum(cost_usd) AS spend_usd, count() AS calls
FROM tokentrail.spans
WHERE operation IN ('chat', 'text_completion', 'embeddings')
GROUP BY day
ORDER BY day""",
    "Top users this month": """SELECT user_id, sum(cost_usd) AS spend_usd, count() AS calls
FROM tokentrail.spans
WHERE timestamp >= toStartOfMonth(now()) AND user_id != ''
GROUP BY user_id
ORDER BY spend_usd DESC
LIMIT 20""",
    "Slowest model calls": """SELECT timestamp, name, request_model, duration_ms, time_to_first_token_ms, trace_id
FROM tokentrail.spans
WHERE operation = 'chat'
ORDER BY duration_ms DESC
LIMIT 20""",
    "Errors by type": """SELECT error_type, count() AS calls, sum(cost_usd) AS spend_usd
FROM tokentrail.spans
WHERE status = 'error'
GROUP BY error_type
ORDER BY calls DESC""",
    "Budget events": """SELECT timestamp, budget, scope_value, event, spent_usd, limit_usd, message
FROM tokentrail.budget_events
ORDER BY timestamp DESC
LIMIT 50""",
    "Columns of tokentrail.spans": "DESCRIBE tokentrail.spans",
}

_SELECT_RE = re.compile(r"^\s*(SELECT|WITH)\b", re.IGNORECASE)
_LIMIT_TAIL_RE = re.compile(r"\bLIMIT\s+\d+(\s*,\s*\d+)?(\s+OFFSET\s+\d+)?\s*;?\s*$", re.IGNORECASE)

# A server has rollups: the first example reads one (a month of spans at 100M takes seconds,
# the hourly rollup milliseconds) and shows how: sums, and NULL when no call had a cost.
ROLLUP_EXAMPLE = """SELECT request_model AS model,
       sum(spans) AS calls,
       sum(input_tokens) AS input_tokens,
       sum(output_tokens) AS output_tokens,
       if(sumIf(spans, has_cost) = 0, NULL, sum(cost_usd)) AS spend_usd
FROM tokentrail.spend_hourly
WHERE operation IN ('chat', 'text_completion', 'embeddings')
  AND hour >= toStartOfHour(now() - INTERVAL 7 DAY)
GROUP BY model
ORDER BY spend_usd DESC"""
_SETTINGS = data.settings()
_DB = _SETTINGS.database
if not _SETTINGS.embedded:
    EXAMPLES = {"Spend by model, last 7 days (hourly rollup)": ROLLUP_EXAMPLE, **EXAMPLES}
# the examples name the configured database (the server URL's path), not always `tokentrail`
if _DB != "tokentrail":
    EXAMPLES = {k: v.replace("tokentrail.", f"{_DB}.") for k, v in EXAMPLES.items()}

st.title("SQL")
st.caption(
    f"Read-only: the store refuses any statement that would change it. Tables: {_DB}.spans, {_DB}.budget_events, "
    f"{_DB}.lost_spans"
    + ("" if _SETTINGS.embedded else f" and the rollups {_DB}.spend_hourly, {_DB}.spend_daily (read them with sum() and GROUP BY)")
    + f". Each query stops after {_SETTINGS.sql_max_seconds:g} s, "
    f"{_SETTINGS.sql_max_memory_bytes / (1 << 30):g} GiB of memory or {_SETTINGS.sql_max_rows:,} result rows "
    "(TOKENTRAIL_SQL_MAX_SECONDS, _MEMORY, _ROWS)."
)


def _use_example() -> None:
    st.session_state["tt_sql"] = EXAMPLES[st.session_state["tt_sql_example"]]


first = next(iter(EXAMPLES))
st.session_state.setdefault("tt_sql", EXAMPLES[first])
st.selectbox("Examples", list(EXAMPLES), key="tt_sql_example", on_change=_use_example)
with st.form("tt_sql_form"):
    sql = st.text_area("Query", key="tt_sql", height=220)
    run = st.form_submit_button("Run", icon=":material/play_arrow:", type="primary")


def _bounded(text: str) -> str:
    """At most MAX_ROWS + 1 rows of a SELECT reach the browser (a SELECT * of 10M spans must not)."""
    stripped = text.strip().rstrip(";").strip()
    if _SELECT_RE.match(stripped) and not _LIMIT_TAIL_RE.search(stripped):
        return f"SELECT * FROM ({stripped}) LIMIT {MAX_ROWS + 1}"
    return stripped


if run or "tt_sql_result" in st.session_state:
    if run:
        try:
            result = data.with_store(data.settings(), data.queries.run_sql, _bounded(sql))
            st.session_state["tt_sql_result"] = (sql, result, None)
        except (data.queries.SqlError, data.StoreUnavailable) as e:
            st.session_state["tt_sql_result"] = (sql, None, str(e))
    ran, result, error = st.session_state["tt_sql_result"]
    if error is not None:
        st.error(error, icon=":material/block:")
    elif result is not None:
        frame = pd.DataFrame(result.rows, columns=result.columns)
        shown = frame.head(MAX_ROWS)
        more = len(frame) > MAX_ROWS
        st.caption(f"{len(shown):,} row(s){' (first ' + f'{MAX_ROWS:,}' + ' shown; add a LIMIT)' if more else ''}")
        ui.table(shown)
        st.download_button(
            "Download CSV", ui.csv_bytes(shown), file_name="tokentrail-query.csv", mime="text/csv", icon=":material/download:"
        )
