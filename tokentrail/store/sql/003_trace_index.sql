-- Migration 3: where each trace lies in time, so one trace's spans are read by trace id
-- within that range (the spans table is ordered by time, not by trace).
CREATE TABLE IF NOT EXISTS $table
(
    trace_id String CODEC(ZSTD(1)),
    min_timestamp SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
    max_timestamp SimpleAggregateFunction(max, DateTime64(6, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(min_timestamp)
ORDER BY trace_id
SETTINGS non_replicated_deduplication_window = 100000
