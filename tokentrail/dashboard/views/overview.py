"""Overview: spend, tokens, calls, cost per call, spend by model over time, month-end forecast."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

import streamlit as st

from tokentrail.dashboard import charts, data, fmt, state, ui

view = ui.view()
st.title("Overview")
st.caption(f"Model calls · {view.describe()}")

try:
    # totals, spend by model over time and the top models: one scan of the store
    page = data.load("overview", view.filters, bucket=view.bucket(), top=10)
except data.StoreUnavailable as e:
    ui.stop_on_error(e)
totals = page.totals

if totals.calls == 0:
    ui.no_match(view)
    st.stop()

c1, c2, c3, c4 = st.columns(4)
c1.metric("Spend", fmt.usd(totals.cost_usd), help="Sum of the priced model calls' cost (USD).")
c2.metric(
    "Tokens",
    fmt.count(totals.input_tokens + totals.output_tokens),
    help=f"{fmt.count(totals.input_tokens)} input (cached included) + {fmt.count(totals.output_tokens)} output",
)
c3.metric("Model calls", fmt.count(totals.calls))
c4.metric("Cost per call", fmt.usd(totals.cost_per_call_usd), help="Spend divided by the priced calls.")
ui.spend_in_currency(view)
c5, c6, c7, c8 = st.columns(4)
c5.metric("Input tokens", fmt.count(totals.input_tokens))
c6.metric("Output tokens", fmt.count(totals.output_tokens))
c7.metric("Errors", fmt.count(totals.errors))
c8.metric(
    "Unpriced calls",
    fmt.count(totals.unpriced_calls),
    help="Calls to a model with no known price: not in Spend. Add a price override in tokentrail.toml.",
)

st.subheader("Spend by model")
st.altair_chart(charts.spend_over_time(page.series, bucket=view.bucket()), width="stretch")

st.subheader("Month-end forecast")
now = state.now()
# the forecast is about this calendar month whatever the time range; the other filters apply
forecast = data.load("month_forecast", replace(view.filters, since=None, until=None), now=now)
f1, f2, f3 = st.columns(3)
f1.metric(f"Spent in {now:%B %Y}", fmt.usd(forecast.spent_usd))
f2.metric("Daily rate (last 7 days)", fmt.usd(forecast.daily_rate_usd))
f3.metric("Forecast at month end", fmt.usd(forecast.forecast_usd))
actual: list[tuple[datetime, Decimal]] = []
running = Decimal(0)
for day, spent in forecast.daily:
    running += spent
    actual.append((day + timedelta(days=1), running))
if actual:
    actual[-1] = (forecast.now, forecast.spent_usd)
projection = [(forecast.now, forecast.spent_usd), (forecast.month_end, forecast.forecast_usd)]
st.altair_chart(charts.burn([(forecast.month_start, Decimal(0)), *actual], projection), width="stretch")
st.caption(
    "Forecast = spent this month + daily rate × days left. The daily rate is the spend of the last "
    "7 days (or of the month so far, when it is younger) per day."
)

st.subheader("Top models")
ui.table(ui.report_frame(page.top_models, "model"), config=ui.REPORT_CONFIG)
