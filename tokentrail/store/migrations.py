"""Numbered schema migrations, applied in order when a store is opened.

Append new migrations at the end; never edit one that has shipped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("tokentrail.store")

DATABASE = "tokentrail"


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "create spans",
        (
            # Block-level insert deduplication: a batch re-sent with the same token is
            # stored once (the spool's exactly-once guarantee rests on it).
            """
            CREATE TABLE IF NOT EXISTS tokentrail.spans
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
            """,
        ),
    ),
    Migration(
        2,
        "create budget_events",
        (
            """
            CREATE TABLE IF NOT EXISTS tokentrail.budget_events
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
            """,
        ),
    ),
    Migration(
        3,
        "create lost_spans",
        (
            # The ledger's holes: rows (spans, budget events) an exporter could not deliver nor
            # spool (the spool at its cap, a disk that refuses writes), counted with their known
            # cost. One row per process and minute of losses.
            """
            CREATE TABLE IF NOT EXISTS tokentrail.lost_spans
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
            """,
        ),
    ),
)


def applied(client: Any) -> set[int]:
    rows = client.query(f"SELECT number FROM {DATABASE}.migrations").result_rows
    return {int(r[0]) for r in rows}


def migrate(client: Any) -> list[int]:
    """Apply every migration not yet applied; return the numbers applied now."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    client.command(
        f"""CREATE TABLE IF NOT EXISTS {DATABASE}.migrations
        (number UInt32, name String, applied_at DateTime64(6, 'UTC') DEFAULT now64(6))
        ENGINE = MergeTree ORDER BY number"""
    )
    done = applied(client)
    now: list[int] = []
    for m in MIGRATIONS:
        if m.number in done:
            continue
        for sql in m.statements:
            client.command(sql)
        client.insert(f"{DATABASE}.migrations", [[m.number, m.name]], column_names=["number", "name"])
        logger.info("applied migration %d: %s", m.number, m.name)
        now.append(m.number)
    return now
