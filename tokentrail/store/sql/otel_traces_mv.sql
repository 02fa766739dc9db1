-- tokentrail otel attach: the Collector's otel_traces rows (its default schema) -> typed,
-- priced tokentrail.spans rows, as they arrive. Model calls of OpenInference, OpenLLMetry and
-- OpenTelemetry genai instrumentations only; the select is built by interop/collector.py.
CREATE MATERIALIZED VIEW IF NOT EXISTS $db.otel_traces_to_spans TO $db.spans
AS $select
