-- Migration 2: every budget warning, block and reset.
CREATE TABLE IF NOT EXISTS $table
(
    timestamp DateTime64(6, 'UTC'),
    budget LowCardinality(String),
    scope_value String,
    event LowCardinality(String),
    threshold Nullable(Float64),
    spent_usd Decimal(18, 9),
    limit_usd Decimal(18, 9),
    estimated_cost_usd Nullable(Decimal(18, 9)),
    period_start DateTime64(6, 'UTC'),
    project LowCardinality(String),
    model LowCardinality(String),
    message String,
    event_id String
)
ENGINE = MergeTree
ORDER BY (budget, timestamp)
SETTINGS non_replicated_deduplication_window = 100000
