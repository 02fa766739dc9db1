"""Efficiency: what caching saved, how much usage was estimated, what errors cost, and what the
same traffic would have cost on another model."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import streamlit as st

from tokentrail.dashboard import data, fmt, state, ui
from tokentrail.pricing import PriceBook

view = ui.view()
st.title("Efficiency")
st.caption(f"Model calls · {view.describe()}")

try:
    savings = data.load("cache_savings", view.filters)
    estimated = data.load("estimated_share", view.filters)
    errors = data.load("error_costs", view.filters)
except data.StoreUnavailable as e:
    ui.stop_on_error(e)
if estimated.calls == 0:
    ui.no_match(view)
    st.stop()

ui.spend_in_currency(view)

st.subheader("Prompt caching")
s1, s2, s3 = st.columns(3)
s1.metric(
    "Saved by caching",
    fmt.usd(savings.saved_usd),
    help="Cache-read tokens re-priced at the model's uncached input price, minus what was paid for them.",
)
s2.metric("Cache-read tokens", fmt.count(savings.cache_read_tokens))
s3.metric(
    "Share of input tokens read from cache",
    fmt.pct(savings.cache_read_tokens, estimated.input_tokens),
)
if savings.unpriced_cache_read_tokens:
    st.caption(
        f"{fmt.count(savings.unpriced_cache_read_tokens)} cache-read tokens of unpriced calls are left out."
    )
if savings.by_model:
    ui.table(
        pd.DataFrame(
            [
                {
                    "model": r.model,
                    "provider": r.provider,
                    "calls": r.calls,
                    "cache_read_tokens": r.cache_read_tokens,
                    "saved_usd": r.saved_usd,
                }
                for r in savings.by_model
            ]
        ),
        config={
            "model": "Model",
            "provider": "Provider",
            "calls": st.column_config.NumberColumn("Calls with cache reads", format="localized"),
            "cache_read_tokens": st.column_config.NumberColumn(
                "Cache-read tokens", format="localized"
            ),
            "saved_usd": st.column_config.NumberColumn("Saved", format="$%.4f"),
        },
    )

st.subheader("Estimated usage")
e1, e2, e3 = st.columns(3)
e1.metric(
    "Calls with estimated usage",
    fmt.pct(estimated.estimated_calls, estimated.calls),
    help="The provider sent no usage, so a tokenizer counted the tokens.",
)
e2.metric("Share of tokens estimated", fmt.pct(estimated.estimated_tokens, estimated.tokens))
e3.metric("Spend on estimated usage", fmt.usd(estimated.estimated_cost_usd))
st.caption(
    f"{fmt.count(estimated.estimated_calls)} of {fmt.count(estimated.calls)} model calls were counted by a tokenizer."
)

st.subheader("Cost of errors")
error_spend = [r.cost_usd for r in errors if r.cost_usd is not None]
r1, r2 = st.columns(2)
r1.metric("Spent on failed calls", fmt.usd(sum(error_spend, Decimal(0)) if error_spend else None))
r2.metric("Failed calls", fmt.count(sum(r.calls for r in errors)))
if errors:
    ui.table(
        ui.report_frame(errors, "error_type"),
        config={"error_type": st.column_config.TextColumn("Error type"), **ui.REPORT_CONFIG},
    )

st.subheader("The same traffic on another model")
choices = data.queries.what_if_models(PriceBook(data.settings().prices))


def _label(choice: tuple[str, str | None]) -> str:
    model, provider = choice
    return f"{provider} / {model}" if provider else f"{model} (price override)"


def _param(choice: tuple[str, str | None]) -> str:
    model, provider = choice
    return f"{provider}/{model}" if provider else model


by_param = {_param(c): c for c in choices}
if st.session_state.get("tt_whatif") not in choices:
    wanted = state.page_param("whatif") or "openai/gpt-4o-mini"
    st.session_state["tt_whatif"] = by_param.get(wanted, choices[0] if choices else None)
target = st.selectbox("Re-price on", choices, format_func=_label, key="tt_whatif")
if target is not None:
    state.set_page_param("whatif", _param(target))
    model, provider = target
    result = data.load("what_if", view.filters, model, provider)
    w1, w2, w3 = st.columns(3)
    w1.metric("Actual spend", fmt.usd(result.actual_usd), help="Chat calls with a known cost.")
    w2.metric(f"On {model}", fmt.usd(result.what_if_usd))
    diff = result.difference_usd
    w3.metric(
        "Difference",
        fmt.usd(diff),
        delta=None if diff is None or not result.actual_usd else fmt.pct(diff, result.actual_usd),
        delta_color="inverse",
    )
    if result.what_if_usd is None:
        st.warning(f"{model} has no price here: add a price override for it in tokentrail.toml.")
    st.caption(
        f"{fmt.count(result.calls)} chat calls re-priced with the same tokens at each call's date "
        f"(a different model would tokenize a little differently). "
        f"{fmt.count(result.skipped_calls)} calls without a known cost are left out."
    )
    if result.by_model:
        ui.table(
            pd.DataFrame(
                [
                    {
                        "model": r.model,
                        "provider": r.provider,
                        "calls": r.calls,
                        "actual_usd": r.actual_usd,
                        "what_if_usd": r.what_if_usd,
                    }
                    for r in result.by_model
                ]
            ),
            config={
                "model": "From model",
                "provider": "Provider",
                "calls": st.column_config.NumberColumn("Calls", format="localized"),
                "actual_usd": st.column_config.NumberColumn("Actual", format="$%.4f"),
                "what_if_usd": st.column_config.NumberColumn(f"On {model}", format="$%.4f"),
            },
        )
