-- Migration 5: every price tokentrail uses, effective-dated (`tokentrail prices sync`).
-- One row per (version, provider, model, tier, period, long-context step). Prices are USD per
-- million tokens, searches and requests per 1,000; NULL = not priced apart (the tokens are
-- billed at their parent's price: cache reads as input, reasoning as output), as in
-- genai-prices. A row applies to calls at valid_from <= time < valid_to with at least
-- min_input_tokens input tokens (the highest such step).
CREATE TABLE IF NOT EXISTS $table
(
    price_id String,
    version LowCardinality(String),
    source LowCardinality(String),
    provider LowCardinality(String),
    model String,
    match_rule String,
    tier LowCardinality(String),
    conditions String,
    valid_from DateTime64(6, 'UTC'),
    valid_to DateTime64(6, 'UTC'),
    min_input_tokens UInt64,
    input_mtok Nullable(Decimal(38, 12)),
    output_mtok Nullable(Decimal(38, 12)),
    cache_read_mtok Nullable(Decimal(38, 12)),
    cache_write_mtok Nullable(Decimal(38, 12)),
    cache_write_1h_mtok Nullable(Decimal(38, 12)),
    reasoning_mtok Nullable(Decimal(38, 12)),
    web_search_kcount Nullable(Decimal(38, 12)),
    requests_kcount Nullable(Decimal(38, 12)),
    synced_at DateTime64(6, 'UTC')
)
ENGINE = ReplacingMergeTree(synced_at)
ORDER BY (version, provider, model, tier, valid_from, min_input_tokens)
SETTINGS non_replicated_deduplication_window = 1000
