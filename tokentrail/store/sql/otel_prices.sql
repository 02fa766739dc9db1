-- tokentrail otel attach: per-token prices (USD) for SQL-side pricing of the Collector's
-- otel_traces rows. Filled from tokentrail's PriceBook (genai-prices + overrides) by
-- `tokentrail otel attach` / `backfill`; issue 14's tokentrail.prices can replace it (same join).
CREATE TABLE IF NOT EXISTS $db.otel_prices
(
    model String,
    kind LowCardinality(String),  -- 'equals': a model name; 'prefix': names starting with it
    input Decimal(38, 18),
    cache_read Decimal(38, 18),
    cache_write Decimal(38, 18),
    output Decimal(38, 18),
    source String,
    updated DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(updated)
ORDER BY (kind, model)
