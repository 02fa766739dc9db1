"""Shared page pieces: the current view, empty states, tables of Decimal money."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pandas as pd
import streamlit as st

from . import data
from .state import View

VIEW_KEY = "tt_view"

QUICKSTART = """\
import tokentrail

tokentrail.configure(project="my-app")          # embedded store in ~/.tokentrail
handler = tokentrail.langchain_handler(user_id="alice", feature="search")
chain.invoke(question, config={"callbacks": [handler]})
tokentrail.flush()
"""


def view() -> View:
    """This run's filters (set by app.py before the page runs)."""
    v = st.session_state.get(VIEW_KEY)
    if not isinstance(v, View):  # a page opened without the entry script: no filters
        from ..queries import Filters

        v = View(filters=Filters(), range_key="all", since=None, until=None)
    return v


def empty_store() -> None:
    """The store holds no span yet: say how to get data in, not an error."""
    s = data.settings()
    st.title("No data yet")
    st.info(
        "The store has no spans yet. Send some traffic, then press **Refresh** in the sidebar.",
        icon=":material/info:",
    )
    st.markdown("**Try it with demo traffic** (realistic LangChain and LlamaIndex calls, offline models):")
    st.code("tokentrail demo --no-dashboard --days 14", language="bash")
    st.markdown("**Or instrument your application** (quickstart):")
    st.code(QUICKSTART, language="python")
    where = data.store_key(s)
    st.caption(
        f"Reading {where}. Point the dashboard elsewhere with TOKENTRAIL_CLICKHOUSE_URL, "
        "TOKENTRAIL_HOME or a tokentrail.toml."
    )


def no_match(v: View) -> None:
    st.info(
        f"No model calls match these filters ({v.describe()}). Widen the time range or clear a filter.",
        icon=":material/filter_alt_off:",
    )


def stop_on_error(e: Exception) -> None:
    st.error(str(e), icon=":material/error:")
    st.stop()


def money_column(label: str, *, places: int = 4) -> Any:
    return st.column_config.NumberColumn(label, format=f"$%.{places}f")


def table(df: pd.DataFrame, *, config: dict[str, Any] | None = None, key: str | None = None, **kw: Any) -> Any:
    return st.dataframe(df, hide_index=True, width="stretch", column_config=config or {}, key=key, **kw)


def csv_bytes(df: pd.DataFrame) -> bytes:
    """CSV with Decimal cells in plain notation: exact to the nano-dollar, no 1.2E-7."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].map(lambda v: format(v, "f") if isinstance(v, Decimal) else v)
    return out.to_csv(index=False).encode("utf-8")


def report_frame(rows: Sequence[Any], key_label: str) -> pd.DataFrame:
    """ReportRow-like rows as a table (money as Decimal)."""
    total = sum((r.cost_usd for r in rows if r.cost_usd is not None), start=0)
    records = []
    for r in rows:
        share = None
        if r.cost_usd is not None and total:
            share = float(r.cost_usd * 100 / total)  # a percentage, not money
        records.append(
            {
                key_label: r.key,
                "spend_usd": r.cost_usd,
                "share_pct": share,
                "calls": r.calls,
                "cost_per_call_usd": r.cost_per_call_usd,
                "input_tokens": r.input_tokens,
                "output_tokens": r.output_tokens,
                "cache_read_tokens": r.cache_read_tokens,
                "errors": r.errors,
                "unpriced_calls": r.unpriced_calls,
            }
        )
    return pd.DataFrame(
        records,
        columns=[
            key_label,
            "spend_usd",
            "share_pct",
            "calls",
            "cost_per_call_usd",
            "input_tokens",
            "output_tokens",
            "cache_read_tokens",
            "errors",
            "unpriced_calls",
        ],
    )


REPORT_CONFIG: dict[str, Any] = {
    "spend_usd": st.column_config.NumberColumn("Spend", format="$%.4f"),
    "share_pct": st.column_config.ProgressColumn("Share", format="%.1f%%", min_value=0, max_value=100),
    "calls": st.column_config.NumberColumn("Calls", format="localized"),
    "cost_per_call_usd": st.column_config.NumberColumn("Cost / call", format="$%.6f"),
    "input_tokens": st.column_config.NumberColumn("Input tokens", format="localized"),
    "output_tokens": st.column_config.NumberColumn("Output tokens", format="localized"),
    "cache_read_tokens": st.column_config.NumberColumn("Cache-read tokens", format="localized"),
    "errors": st.column_config.NumberColumn("Errors", format="localized"),
    "unpriced_calls": st.column_config.NumberColumn("Unpriced calls", format="localized"),
}


def spend_in_currency(v: View) -> None:
    """"Spend in EUR" (the configured currency), when it is not USD: the store is in USD, each
    day's spend is converted at that day's rate; a missing rate is shown as a warning."""
    currency = data.settings().currency
    if currency is None or currency.code == "USD":
        return
    try:
        shown = data.load("spend_in_currency", v.filters, currency=currency)
    except data.StoreUnavailable as e:  # a missing rate (MissingRate) arrives as this: shown
        st.warning(str(e))
        return
    st.metric(f"Spend in {currency.code}", currency.format(shown.total), help=f"Each day's USD at that day's rate ({currency.source}).")
