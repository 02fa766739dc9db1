-- Migration 3: each trace as a whole: where it lies in time (so its spans are read by trace id
-- within that range: the spans table is ordered by time, not by trace), how many spans it has,
-- when its last span ends and its root span's name (the span without a parent, else the first).
CREATE TABLE IF NOT EXISTS $table
(
    trace_id String CODEC(ZSTD(1)),
    min_timestamp SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
    max_timestamp SimpleAggregateFunction(max, DateTime64(6, 'UTC')),
    max_end SimpleAggregateFunction(max, DateTime64(6, 'UTC')),
    spans SimpleAggregateFunction(sum, UInt64),
    root AggregateFunction(argMin, String, Tuple(Bool, DateTime64(6, 'UTC')))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(min_timestamp)
ORDER BY trace_id
SETTINGS non_replicated_deduplication_window = 100000
