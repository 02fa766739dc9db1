"""tokentrail beside other OpenTelemetry GenAI instrumentations.

- `genai_cost`: the cost attributes other backends read (gen_ai.usage.cost, PR #443's draft);
- `foreign`: a SpanProcessor that prices spans made by OpenInference, OpenLLMetry and
  OpenTelemetry's own genai instrumentations and writes them to the ledger (`normalise`: their
  usage; `ledger_row`: the row; `dedupe`: counted once beside tokentrail's hooks;
  `foreign_budget`: budgets reserved where a span's start allows it);
- `collector`: the SQL that turns the OpenTelemetry Collector's `otel_traces` rows into
  priced `tokentrail.spans` rows (`tokentrail otel attach|backfill`; `collector_prices`: prices
  from tokentrail.prices at each span's time).
"""
