-- Migration 1: one row per span. Block-level insert deduplication: a batch re-sent with the
-- same token (the spool's batch id) is stored once; the exactly-once guarantee rests on it.
CREATE TABLE IF NOT EXISTS $table
(
    timestamp DateTime64(6, 'UTC'),
    duration_ms Float64,
    trace_id String,
    span_id String,
    parent_span_id String,
    name LowCardinality(String),
    operation LowCardinality(String),
    framework LowCardinality(String),
    service_name LowCardinality(String),
    project LowCardinality(String),
    environment LowCardinality(String),
    team LowCardinality(String),
    feature LowCardinality(String),
    user_id String,
    session_id String,
    tags Array(String),
    provider LowCardinality(String),
    request_model LowCardinality(String),
    response_model LowCardinality(String),
    input_tokens UInt64,
    output_tokens UInt64,
    cache_read_tokens UInt64,
    cache_write_tokens UInt64,
    reasoning_tokens UInt64,
    usage_estimated Bool,
    input_cost_usd Nullable(Decimal(18, 9)),
    output_cost_usd Nullable(Decimal(18, 9)),
    cost_usd Nullable(Decimal(18, 9)),
    cost_status LowCardinality(String),
    status LowCardinality(String),
    error_type String,
    time_to_first_token_ms Nullable(Float64),
    attributes Map(String, String),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (project, timestamp)
SETTINGS non_replicated_deduplication_window = 100000
