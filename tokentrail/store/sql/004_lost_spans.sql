-- Migration 4: the ledger's holes. Rows (spans, budget events) an exporter could neither deliver
-- nor spool (the spool at its cap, a disk that refuses writes), counted with their known cost.
-- One row per process, table, reason and minute of losses.
CREATE TABLE IF NOT EXISTS $table
(
    timestamp DateTime64(6, 'UTC'),
    first_lost DateTime64(6, 'UTC'),
    last_lost DateTime64(6, 'UTC'),
    host LowCardinality(String),
    pid UInt32,
    service_name LowCardinality(String),
    project LowCardinality(String),
    table_name LowCardinality(String),
    reason LowCardinality(String),
    rows UInt64,
    spans UInt64,
    model_spans UInt64,
    unpriced_model_spans UInt64,
    cost_usd Decimal(38, 9),
    message String,
    record_id String
)
ENGINE = MergeTree
ORDER BY timestamp
SETTINGS non_replicated_deduplication_window = 100000
