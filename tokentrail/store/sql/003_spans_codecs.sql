-- Migration 3: codecs for 100M+ spans (a metadata change: new parts are written with them,
-- existing parts as they merge). Timestamps are sorted within a project: Delta; token counts
-- are small integers in 64-bit columns: T64; everything else ZSTD instead of LZ4.
ALTER TABLE $table
    MODIFY COLUMN timestamp DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    MODIFY COLUMN duration_ms Float64 CODEC(ZSTD(1)),
    MODIFY COLUMN trace_id String CODEC(ZSTD(1)),
    MODIFY COLUMN span_id String CODEC(ZSTD(1)),
    MODIFY COLUMN parent_span_id String CODEC(ZSTD(1)),
    MODIFY COLUMN name LowCardinality(String) CODEC(ZSTD(1)),
    MODIFY COLUMN user_id String CODEC(ZSTD(1)),
    MODIFY COLUMN session_id String CODEC(ZSTD(1)),
    MODIFY COLUMN tags Array(String) CODEC(ZSTD(1)),
    MODIFY COLUMN input_tokens UInt64 CODEC(T64, ZSTD(1)),
    MODIFY COLUMN output_tokens UInt64 CODEC(T64, ZSTD(1)),
    MODIFY COLUMN cache_read_tokens UInt64 CODEC(T64, ZSTD(1)),
    MODIFY COLUMN cache_write_tokens UInt64 CODEC(T64, ZSTD(1)),
    MODIFY COLUMN reasoning_tokens UInt64 CODEC(T64, ZSTD(1)),
    MODIFY COLUMN input_cost_usd Nullable(Decimal(18, 9)) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN output_cost_usd Nullable(Decimal(18, 9)) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN cost_usd Nullable(Decimal(18, 9)) CODEC(T64, ZSTD(1)),
    MODIFY COLUMN error_type String CODEC(ZSTD(1)),
    MODIFY COLUMN time_to_first_token_ms Nullable(Float64) CODEC(ZSTD(1)),
    MODIFY COLUMN attributes Map(String, String) CODEC(ZSTD(1))
