-- Migration 3: each trace's model calls by hour: the Traces page ranks traces on it instead of
-- grouping a month of spans by trace id. trace_key = sipHash128(trace_id): a fixed-size key
-- groups faster than the 32-character id.
CREATE TABLE IF NOT EXISTS $table
(
    hour DateTime('UTC') CODEC(Delta, ZSTD(1)),
    trace_key UInt128,
    trace_id SimpleAggregateFunction(any, String) CODEC(ZSTD(1)),
    calls UInt64,
    priced_calls UInt64,
    cost_usd Decimal(38, 9),
    input_tokens UInt64,
    output_tokens UInt64,
    errors UInt64,
    min_timestamp SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
    user_id SimpleAggregateFunction(any, String) CODEC(ZSTD(1)),
    feature SimpleAggregateFunction(any, String) CODEC(ZSTD(1))
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, trace_key)
SETTINGS non_replicated_deduplication_window = 100000
