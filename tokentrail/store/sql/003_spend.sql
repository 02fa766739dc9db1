-- Migration 3: spend and tokens by $grain: spend_hourly by hour and model (no team, feature or
-- user: what the Overview and Efficiency pages and `report --by model` read), spend_daily by day
-- and every attribution field but the user (the Breakdown page, team / feature / tag filters,
-- budgets). Sums only: read with sum(). has_cost: the spans with a cost (a NULL cost is
-- unknown, not zero); input_tier: how many of genai-prices' tier thresholds the call's input
-- exceeds (tiered prices are cliffs).
CREATE TABLE IF NOT EXISTS $table
(
    $bucket_column,
    ${attribution_columns}project LowCardinality(String),
    environment LowCardinality(String),
    operation LowCardinality(String),
    provider LowCardinality(String),
    request_model LowCardinality(String),
    response_model LowCardinality(String),
    status LowCardinality(String),
    cost_status LowCardinality(String),
    error_type LowCardinality(String),
    framework LowCardinality(String),
    service_name LowCardinality(String),
    usage_estimated Bool,
    has_cost Bool,
    input_tier UInt8,
    spans UInt64,
    input_tokens UInt64,
    output_tokens UInt64,
    cache_read_tokens UInt64,
    cache_write_tokens UInt64,
    reasoning_tokens UInt64,
    uncached_input_tokens UInt64,
    output_or_reasoning_tokens UInt64,
    cache_read_calls UInt64,
    cost_usd Decimal(38, 9),
    min_timestamp SimpleAggregateFunction(min, DateTime64(6, 'UTC'))
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM($bucket)
ORDER BY ($bucket, operation, ${lead_keys}request_model, provider, project, environment, ${mid_keys}response_model, status,
          cost_status, error_type, usage_estimated, has_cost, input_tier, framework, service_name)
SETTINGS non_replicated_deduplication_window = 100000
