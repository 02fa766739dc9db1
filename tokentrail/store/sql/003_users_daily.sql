-- Migration 3: spans per user and day: the dashboard's list of users to filter on (the most
-- active first) without reading a month of user ids.
CREATE TABLE IF NOT EXISTS $table
(
    day Date CODEC(Delta, ZSTD(1)),
    user_id String CODEC(ZSTD(1)),
    spans UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, user_id)
SETTINGS non_replicated_deduplication_window = 100000
