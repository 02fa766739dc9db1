-- Migration 5: the as-charged ledger. What a span was charged stays in cost_usd (never
-- rewritten); these say which price charged it (a row of `prices`) and the fee counts a
-- re-pricing needs. Old spans read 0 / '' (a re-pricing then matches them by model name).
ALTER TABLE $table
    ADD COLUMN IF NOT EXISTS cache_write_1h_tokens UInt64 CODEC(T64, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS web_search_requests UInt64 CODEC(T64, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS service_tier LowCardinality(String),
    ADD COLUMN IF NOT EXISTS fees_usd Nullable(Decimal(18, 9)) CODEC(T64, ZSTD(1)),
    ADD COLUMN IF NOT EXISTS price_id LowCardinality(String),
    ADD COLUMN IF NOT EXISTS price_version LowCardinality(String)
