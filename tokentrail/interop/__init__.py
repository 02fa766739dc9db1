"""tokentrail beside other OpenTelemetry GenAI instrumentations.

- `genai_cost`: the cost attributes other backends read (gen_ai.usage.cost, PR #443's draft);
- `foreign`: a SpanProcessor that prices spans made by OpenInference, OpenLLMetry and
  OpenTelemetry's own genai instrumentations and writes them to the ledger;
- `collector`: the SQL that turns the OpenTelemetry Collector's `otel_traces` rows into
  priced `tokentrail.spans` rows (`tokentrail otel attach|backfill`).
"""
