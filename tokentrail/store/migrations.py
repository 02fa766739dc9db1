"""Numbered schema migrations (DDL in `sql/`), applied once per process per store.

Append new migrations at the end; never edit one that has shipped (its SQL files included).

Safe when many processes migrate one server at once: every statement is idempotent (IF NOT
EXISTS, ALTERs to the same codecs), a migration is recorded with an insert deduplication token
(recorded once however many processes record it), and the one step that is not idempotent —
filling new rollups from the spans already stored — is done by the single process that wins the
creation of a snapshot table (CREATE TABLE without IF NOT EXISTS: exactly one succeeds). That
process holds inserts into spans back for a moment (`max_parts_in_total = 1`: writers get a
retryable error and spool; nothing is lost), waits for inserts in flight, snapshots the spans
(ATTACH PARTITION FROM: hard links), creates the materialized views, lets inserts in again,
fills the rollups from the snapshot, drops it and records the migration. Spans inserted before
that moment reach the rollups through the snapshot, after it through the views: each exactly
once. The other processes wait for the record; readers use rollups only once it is there.

The embedded store has no rollups (see migrate_node's `rollups`): migration 3 gives it the codecs.

On a cluster (`cluster=`), every node gets the tables as `<name>_local` plus a Distributed
`<name>` over them (inserts and reads go through it), node by node over HTTP, because
`ON CLUSTER` needs Keeper. Each node keeps its own migrations table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .ddl import (
    BACKFILL_QUERY_ID,
    DATABASE,
    RETENTION,
    SNAPSHOT,
    SQL_DIR,
    Alter,
    Migration,
    Table,
    View,
    applied,
    error_code,
    sql_file,
)
from .errors import OTHER, StoreError, StoreProblem
from .node import Node
from .schema import ROLLUPS, Schema

logger = logging.getLogger("tokentrail.store")

__all__ = [
    "BACKFILL_QUERY_ID", "DATABASE", "MIGRATIONS", "RETENTION", "ROLLUPS", "SNAPSHOT", "SQL_DIR", "Alter", "Migration", "Schema", "Table",
    "View", "applied", "error_code", "migrate", "migrate_node", "sql_file",
]  # fmt: skip


# the two spend rollups share their SQL: the hourly one without the attribution fields
_HOURLY = (
    ("grain", "hour"), ("bucket", "hour"), ("bucket_column", "hour DateTime('UTC') CODEC(Delta, ZSTD(1))"),
    ("bucket_select", "toStartOfHour(s.timestamp)"), ("attribution_columns", ""), ("attribution_select", ""),
    ("attribution_group", ""), ("lead_keys", ""), ("mid_keys", ""),
)  # fmt: skip
_DAILY = (
    ("grain", "day"), ("bucket", "day"), ("bucket_column", "day Date CODEC(Delta, ZSTD(1))"),
    ("bucket_select", "toDate(s.timestamp)"),
    ("attribution_columns", "team LowCardinality(String),\n    feature LowCardinality(String),\n    tags Array(String),\n    "),
    ("attribution_select", "s.team AS team, s.feature AS feature, s.tags AS tags,\n    "),
    ("attribution_group", "team, feature, tags, "), ("lead_keys", "team, feature, "), ("mid_keys", "tags, "),
)  # fmt: skip

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "create spans", (Table("spans", "001_spans.sql", "cityHash64(trace_id)"),)),
    Migration(2, "create budget_events", (Table("budget_events", "002_budget_events.sql", "cityHash64(event_id)"),)),
    Migration(
        ROLLUPS,
        "codecs, trace index, rollups",
        (
            Alter("spans", "003_spans_codecs.sql"),
            Table("trace_index", "003_trace_index.sql", rollup=True),
            Table("spend_hourly", "003_spend.sql", rollup=True, names=_HOURLY),
            Table("spend_daily", "003_spend.sql", rollup=True, names=_DAILY),
            Table("traces_hourly", "003_traces_hourly.sql", rollup=True),
            Table("users_daily", "003_users_daily.sql", rollup=True),
        ),
        (
            View("trace_index", "003_trace_index.view.sql"),
            View("spend_hourly", "003_spend.view.sql", _HOURLY),
            View("spend_daily", "003_spend.view.sql", _DAILY),
            View("traces_hourly", "003_traces_hourly.view.sql"),
            View("users_daily", "003_users_daily.view.sql"),
        ),
    ),
    Migration(4, "create lost_spans", (Table("lost_spans", "004_lost_spans.sql", "cityHash64(record_id)"),)),
    Migration(
        5,
        "prices, spans' price columns",
        (Alter("spans", "005_spans_prices.sql", distributed=True), Table("prices", "005_prices.sql", "cityHash64(price_id)")),
    ),
)



def migrate_node(
    client: Any,
    database: str = DATABASE,
    cluster: str | None = None,
    *,
    exclusive: bool = False,
    wait: float = 30.0,
    stale_after: float = 60.0,
    retention_days: int | None = None,
    rollups: bool = True,
) -> set[int]:
    """Bring one node's schema up to date; return the migrations it has now.

    exclusive: no other process can reach the store (the embedded one, under its lock).
    rollups: make the rollups and their views. The embedded store has none: its readers ingest
    the spool before they answer, and views would make every spool file's insert several times
    slower (measured: 270 ms instead of 75 ms a file) for a store one machine fills."""
    node = Node(client, database, cluster)
    node.ensure_database()
    if node.ddl_of("spans"):
        node.check_spans()  # before touching a table that may not be tokentrail's
    done = node.applied()
    for m in MIGRATIONS:
        if m.number in done:
            continue
        for step in m.steps:
            if isinstance(step, Table):
                if rollups or not step.rollup:
                    node.table(step)
            else:
                node.alter(step)
        if rollups and m.views and not node.build_views(m, exclusive=exclusive, wait=wait, stale_after=stale_after):
            done = applied(client, database)
            if m.number not in done:
                break  # another process is still on it; later migrations wait for it
            continue
        if not (rollups and m.views):  # a build recorded its migration already (build_views)
            node.record(m)
        logger.info("tokentrail: applied migration %d to %s: %s", m.number, database, m.name)
        done.add(m.number)
    node.check_spans()
    if retention_days is not None:
        node.retention(retention_days)
    return done


@dataclass(frozen=True)
class ClusterNode:
    shard: int
    replica: int
    host: str
    is_local: bool


def cluster_nodes(client: Any, cluster: str) -> list[ClusterNode]:
    rows = client.query(
        "SELECT shard_num, replica_num, host_name, is_local FROM system.clusters WHERE cluster = {c:String} "
        "ORDER BY shard_num, replica_num",
        parameters={"c": cluster},
    ).result_rows
    if not rows:
        raise StoreError(
            StoreProblem(
                OTHER,
                f"the server has no cluster {cluster!r} (see system.clusters); fix the cluster setting, "
                "or define it under <remote_servers> in every node's config",
            )
        )
    nodes = [ClusterNode(int(s), int(r), str(h), bool(loc)) for s, r, h, loc in rows]
    if any(n.replica > 1 for n in nodes):
        raise StoreError(
            StoreProblem(
                OTHER,
                f"cluster {cluster!r} has replicas, and tokentrail does not create ReplicatedMergeTree tables "
                "yet (they need Keeper); use a cluster of single-replica shards",
            )
        )
    return nodes


def migrate(
    client: Any,
    database: str = DATABASE,
    cluster: str | None = None,
    *,
    connect: Callable[[str], Any] | None = None,
    exclusive: bool = False,
    wait: float = 30.0,
    stale_after: float = 60.0,
    retention_days: int | None = None,
    rollups: bool = True,
) -> Schema:
    """Migrate a store: one server, or every node of `cluster` (each reached with `connect(host)`)."""

    def one(c: Any) -> set[int]:
        return migrate_node(
            c, database, cluster, exclusive=exclusive, wait=wait, stale_after=stale_after,
            retention_days=retention_days, rollups=rollups,
        )  # fmt: skip

    if not cluster:
        return Schema(database, None, frozenset(one(client)), views=rollups)
    if connect is None:
        raise ValueError("a cluster needs connect(host) to reach each node")
    nodes = cluster_nodes(client, cluster)
    results: list[set[int]] = []
    if not any(n.is_local for n in nodes):  # a node outside the cluster reads through it too
        results.append(one(client))
    for n in nodes:
        if n.is_local:
            results.append(one(client))
            continue
        other = connect(n.host)
        try:
            results.append(one(other))
        finally:
            other.close()
    return Schema(database, cluster, frozenset(set.intersection(*results)), views=rollups)
