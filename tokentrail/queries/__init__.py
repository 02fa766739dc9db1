"""Every question tokentrail asks of the store, in one package: the CLI and the dashboard share it.

A function here takes an open `Store` (see `tokentrail.store.open_store`) and a `Filters`, and
returns typed results. Filters render to a WHERE clause with ClickHouse server-side parameters
(`{name:Type}`): user values never become SQL text. Money is `Decimal` (the column is
`Decimal(18, 9)`), never float; a sum over unpriced calls only is `None` (unknown), never $0.

Spend is counted on model-call spans (operation chat / text_completion / embeddings): chains,
retrievers and tools carry no cost of their own.

Modules: filters (time windows, Filters -> WHERE), source (where the spans are read from: the
raw spans or a rollup, with the same sums either way), spend (report, totals, breakdowns,
series, forecast), sql (read-only user SQL), traces, efficiency (cache savings, estimated usage,
errors), rates (prices applied to summed usage), whatif (the same traffic on another model),
reprice (the re-priced ledger in SQL), budgets (budget spend and events), currency, activity
(what the CLI reports after writing), status (`tokentrail status`'s row counts and recorded losses).
Every table is named through the store (`store.table("spans")`): the database is the one the
URL names.

To add a question (a dashboard page, say): write a function `name(store, filters, ...) -> typed
result` that aggregates `source.facts(store, filters, need=<columns it reads>)` (or
`spend.model_call_facts` for model calls) with sums only (`sum(spans)` counts spans), so it is
answered from a rollup where one has those columns.
"""

from __future__ import annotations

from .efficiency import (
    CacheSavings,
    CacheSavingsRow,
    EstimatedShare,
    cache_savings,
    error_costs,
    estimated_share,
)
from .filters import (
    FILTER_FIELDS,
    GROUP_BY,
    MODEL_OPERATIONS,
    Filters,
    FilterValue,
    Where,
    model_calls,
    parse_time,
    parse_window,
)
from .rates import price_book, tier_thresholds
from .spend import (
    BREAKDOWN_BY,
    MonthForecast,
    Overview,
    ReportRow,
    SeriesPoint,
    Totals,
    breakdown,
    check_group,
    filter_values,
    month_forecast,
    overview,
    report,
    span_count,
    spend_series,
    totals,
)
from .sql import (
    SqlError,
    SqlResult,
    run_sql,
    sql_error,
)
from .traces import (
    TraceSpan,
    TraceSummary,
    top_traces,
    trace_spans,
)
from .whatif import CHAT_OPERATIONS, WHAT_IF_PROVIDERS, WhatIf, WhatIfRow, what_if, what_if_models

__all__ = [
    "BREAKDOWN_BY",
    "CHAT_OPERATIONS",
    "CacheSavings",
    "CacheSavingsRow",
    "EstimatedShare",
    "FILTER_FIELDS",
    "FilterValue",
    "Filters",
    "GROUP_BY",
    "MODEL_OPERATIONS",
    "MonthForecast",
    "Overview",
    "ReportRow",
    "SeriesPoint",
    "SqlError",
    "SqlResult",
    "Totals",
    "TraceSpan",
    "TraceSummary",
    "WHAT_IF_PROVIDERS",
    "WhatIf",
    "WhatIfRow",
    "Where",
    "breakdown",
    "cache_savings",
    "check_group",
    "error_costs",
    "estimated_share",
    "filter_values",
    "model_calls",
    "month_forecast",
    "overview",
    "parse_time",
    "parse_window",
    "price_book",
    "report",
    "run_sql",
    "span_count",
    "spend_series",
    "sql_error",
    "tier_thresholds",
    "top_traces",
    "totals",
    "trace_spans",
    "what_if",
    "what_if_models",
]

# issue 14: spend in the configured currency
from .currency import CurrencySpend, spend_in_currency  # noqa: E402

__all__ += ["CurrencySpend", "spend_in_currency"]
