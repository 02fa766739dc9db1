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
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from .errors import OTHER, SCHEMA, StoreError, StoreProblem
from .schema import ROLLUPS, SPANS_COLUMNS, Schema

logger = logging.getLogger("tokentrail.store")

__all__ = ["DATABASE", "MIGRATIONS", "ROLLUPS", "Migration", "Schema", "applied", "migrate", "migrate_node"]

DATABASE = "tokentrail"  # the default; Settings.database is the one in use
SQL_DIR = Path(__file__).with_name("sql")
SNAPSHOT = "_tokentrail_backfill"
BACKFILL_QUERY_ID = "tokentrail-backfill-"
_EXISTS = {57, 82}  # TABLE_ALREADY_EXISTS, DATABASE_ALREADY_EXISTS


@dataclass(frozen=True)
class Table:
    """A data table: a MergeTree on one server; `<name>_local` plus a Distributed `<name>` on a
    cluster. shard_key: how the Distributed table spreads inserts, deterministic so that a
    retried batch lands on the same shards and each shard deduplicates it; None for a table
    only read through the Distributed one (a rollup, filled on each shard by its view)."""

    name: str
    file: str
    shard_key: str | None = None
    rollup: bool = False  # filled by a view: a server's only (see migrate_node)
    names: tuple[tuple[str, str], ...] = ()  # more $names of its SQL file


@dataclass(frozen=True)
class Alter:
    table: str
    file: str
    distributed: bool = False  # adds columns: the Distributed table of a cluster gets them too


@dataclass(frozen=True)
class View:
    """A materialized view `<target>_mv` filling table `target` from spans; `file`: its SELECT."""

    target: str
    file: str
    names: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    steps: tuple[Table | Alter, ...]
    views: tuple[View, ...] = ()


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

# table -> the day a row belongs to, for the retention TTL: the same day on every table, so a
# rollup loses a day when the spans do
RETENTION: dict[str, str] = {
    "spans": "toDate(timestamp)",
    "trace_index": "toDate(max_timestamp)",
    "spend_hourly": "toDate(hour)",
    "spend_daily": "day",
    "traces_hourly": "toDate(hour)",
    "users_daily": "day",
}


def sql_file(name: str, **names: str) -> str:
    return Template((SQL_DIR / name).read_text()).substitute(**names)


def error_code(e: BaseException) -> int | None:
    codes = re.findall(r"Code:\s*(\d+)\.", str(e))
    return int(codes[-1]) if codes else None


def applied(client: Any, database: str = DATABASE) -> set[int]:
    rows = client.query(f"SELECT number FROM `{database}`.migrations").result_rows
    return {int(r[0]) for r in rows}


class _Node:
    """The DDL of one ClickHouse node; on a cluster a table's storage is `<name>_local`."""

    def __init__(self, client: Any, database: str, cluster: str | None) -> None:
        self.c = client
        self.db = database
        self.cluster = cluster

    def local(self, table: str) -> str:
        return f"{table}_local" if self.cluster else table

    def q(self, table: str) -> str:
        return f"`{self.db}`.{self.local(table)}"

    def one(self, sql: str, **params: Any) -> Any:
        rows = self.c.query(sql, parameters={"db": self.db, **params}).result_rows
        return rows[0][0] if rows else None

    def ddl_of(self, table: str) -> str:
        return str(
            self.one("SELECT create_table_query FROM system.tables WHERE database = {db:String} AND name = {t:String}", t=table) or ""
        )

    def command(self, sql: str, **kw: Any) -> None:
        try:
            self.c.command(sql, **kw)
        except Exception as e:  # only "already exists" is expected; others re-raise
            if error_code(e) in _EXISTS and "IF NOT EXISTS" in sql:
                return  # a concurrent process created it between our check and our create
            raise

    # -- bootstrap -------------------------------------------------------------------------
    def ensure_database(self) -> None:
        # only when missing: CREATE DATABASE needs a right an application's user may lack
        if not self.one("SELECT count() FROM system.databases WHERE name = {db:String}"):
            self.command(f"CREATE DATABASE IF NOT EXISTS `{self.db}`")

    def applied(self) -> set[int]:
        if not self.ddl_of("migrations"):
            self.command(
                f"CREATE TABLE IF NOT EXISTS `{self.db}`.migrations "
                "(number UInt32, name String, applied_at DateTime64(6, 'UTC') DEFAULT now64(6)) "
                "ENGINE = MergeTree ORDER BY number SETTINGS non_replicated_deduplication_window = 1000"
            )
        return applied(self.c, self.db)

    def record(self, m: Migration) -> None:
        if "non_replicated_deduplication_window" not in self.ddl_of("migrations"):
            # made by a tokentrail that recorded without deduplication
            self.command(f"ALTER TABLE `{self.db}`.migrations MODIFY SETTING non_replicated_deduplication_window = 1000")
        self.c.insert(
            f"`{self.db}`.migrations",
            [[m.number, m.name]],
            column_names=["number", "name"],
            settings={"insert_deduplication_token": f"tokentrail-migration-{m.number}"},
        )

    # -- steps -------------------------------------------------------------------------------
    def table(self, t: Table) -> None:
        self.command(sql_file(t.file, table=self.q(t.name), **dict(t.names)))
        if self.cluster:
            key = f", {t.shard_key}" if t.shard_key else ""
            self.command(
                f"CREATE TABLE IF NOT EXISTS `{self.db}`.{t.name} AS {self.q(t.name)} "
                f"ENGINE = Distributed({self.cluster}, {self.db}, {self.local(t.name)}{key})"
            )

    def alter(self, a: Alter) -> None:
        self.command(sql_file(a.file, table=self.q(a.table)))
        if self.cluster and a.distributed:
            self.command(sql_file(a.file, table=f"`{self.db}`.{a.table}"))

    def build_views(self, m: Migration, *, exclusive: bool, wait: float, stale_after: float) -> bool:
        """Create the views and fill their tables from the spans already stored, in one process
        only. True when this process did it (and records the migration)."""
        snapshot = f"`{self.db}`.{SNAPSHOT}"
        deadline = time.monotonic() + wait
        while True:
            try:
                self.c.command(f"CREATE TABLE {snapshot} AS {self.q('spans')}")
            except Exception as e:  # only "already exists" is expected; others re-raise
                if error_code(e) not in _EXISTS:
                    raise
            else:
                if m.number not in applied(self.c, self.db):
                    break
                # the builder recorded it and dropped its snapshot meanwhile: nothing to build
                self.c.command(f"DROP TABLE IF EXISTS {snapshot} SYNC")
                return False
            if m.number in applied(self.c, self.db):
                return False  # built meanwhile (its snapshot not dropped yet)
            # another process is building, or died building
            stale = True if exclusive else self._stale(stale_after)
            if stale is None and time.monotonic() < deadline:
                # not (or no longer) in system.tables: being created or just dropped by its
                # builder; never undo a build that may be alive, try the CREATE again
                time.sleep(0.05)
                continue
            if stale:
                logger.warning("tokentrail: an earlier rollup build in %s was interrupted; building again", self.db)
                self._undo(m)
                continue
            while time.monotonic() < deadline:
                if m.number in applied(self.c, self.db):
                    return False
                time.sleep(0.1)
            logger.info("tokentrail: another process is still filling the rollups of %s; reading spans until then", self.db)
            return False
        try:
            self._undo_views(m)  # views of a build that died after making them
            partitions = self._freeze_and_create(m, snapshot, pause=not exclusive)
            for v in m.views:
                for p in partitions:  # a month at a time: bounded memory
                    part = f"(SELECT * FROM {snapshot} WHERE _partition_id = '{p}')"
                    settings: dict[str, Any] = {"insert_deduplicate": 0}
                    if not exclusive:  # tagged: a process that sees it running knows the build is alive
                        settings["query_id"] = f"{BACKFILL_QUERY_ID}{uuid.uuid4().hex}"
                    self.c.command(f"INSERT INTO {self.q(v.target)} {sql_file(v.file, spans=part, **dict(v.names))}", settings=settings)
        except BaseException:  # undo the half-made migration, then re-raise
            try:
                self._undo(m)
            except Exception:  # the first error is the one to raise; this one is logged
                logger.exception("tokentrail: could not undo a failed rollup build in %s", self.db)
            raise
        self.record(m)  # before the snapshot goes: a process that then creates one sees it built
        self.c.command(f"DROP TABLE IF EXISTS {snapshot} SYNC")
        return True

    def _freeze_and_create(self, m: Migration, snapshot: str, *, pause: bool) -> list[str]:
        """Snapshot the spans and create the views at one moment, inserts held back meanwhile."""
        spans = self.q("spans")
        held = pause and bool(self.one("SELECT count() FROM system.parts WHERE database = {db:String} AND table = {t:String} AND active", t=self.local("spans")))
        if held:
            self.c.command(f"ALTER TABLE {spans} MODIFY SETTING max_parts_in_total = 1")
        try:
            if held:
                self._wait_for_inserts()
            partitions = [
                str(r[0])
                for r in self.c.query(
                    "SELECT DISTINCT partition_id FROM system.parts WHERE database = {db:String} AND table = {t:String} AND active",
                    parameters={"db": self.db, "t": self.local("spans")},
                ).result_rows
            ]
            for p in partitions:
                self.c.command(f"ALTER TABLE {snapshot} ATTACH PARTITION ID '{p}' FROM {spans}")
            for v in m.views:
                select = sql_file(v.file, spans=spans, **dict(v.names))
                self.command(f"CREATE MATERIALIZED VIEW IF NOT EXISTS `{self.db}`.{v.target}_mv TO {self.q(v.target)} AS {select}")
        finally:
            if held:
                self.c.command(f"ALTER TABLE {spans} RESET SETTING max_parts_in_total")
        return partitions

    def _wait_for_inserts(self, timeout: float = 10.0) -> None:
        pattern = rf"(?i)INSERT\s+INTO\s+`?{self.db}`?\.`?{self.local('spans')}\b"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.one("SELECT count() FROM system.processes WHERE match(query, {p:String})", p=pattern):
                return
            time.sleep(0.02)

    def _stale(self, stale_after: float) -> bool | None:
        age = self.one(
            "SELECT dateDiff('second', metadata_modification_time, now()) FROM system.tables "
            "WHERE database = {db:String} AND name = {t:String}",
            t=SNAPSHOT,
        )
        if age is None:
            return None  # not visible: the caller tries to create it again
        running = self.one("SELECT count() FROM system.processes WHERE startsWith(query_id, {p:String})", p=BACKFILL_QUERY_ID)
        return int(age) >= stale_after and not running

    def _undo_views(self, m: Migration) -> None:
        """Drop the views of a build that died, and empty their tables (half filled, or filled
        and never recorded): the build starts over from a new snapshot."""
        if not any(self.ddl_of(f"{v.target}_mv") for v in m.views):
            return
        for v in m.views:
            self.c.command(f"DROP VIEW IF EXISTS `{self.db}`.{v.target}_mv SYNC")
        for v in m.views:
            if self.ddl_of(self.local(v.target)):
                self.c.command(f"TRUNCATE TABLE {self.q(v.target)}")

    def _undo(self, m: Migration) -> None:
        self._undo_views(m)
        if "max_parts_in_total" in self.ddl_of(self.local("spans")):
            self.c.command(f"ALTER TABLE {self.q('spans')} RESET SETTING max_parts_in_total")
        self.c.command(f"DROP TABLE IF EXISTS `{self.db}`.{SNAPSHOT} SYNC")

    # -- after the migrations ------------------------------------------------------------------
    def check_spans(self) -> None:
        """Refuse a `spans` table that is not tokentrail's (made by someone else)."""
        have = {
            str(n): str(t)
            for n, t in self.c.query(
                "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = 'spans'",
                parameters={"db": self.db},
            ).result_rows
        }
        wrong = [f"{n} {t}" for n, t in SPANS_COLUMNS.items() if have.get(n) != t]
        if wrong:
            shown = ", ".join(wrong[:3]) + (f" and {len(wrong) - 3} more" if len(wrong) > 3 else "")
            raise StoreError(
                StoreProblem(
                    SCHEMA,
                    f"table {self.db}.spans is not tokentrail's (it lacks {shown}); point "
                    "TOKENTRAIL_CLICKHOUSE_URL at a database of its own, e.g. http://host:8123/tokentrail",
                )
            )

    def retention(self, days: int) -> None:
        for table, day in RETENTION.items():
            ddl = self.ddl_of(self.local(table))
            if not ddl:
                continue
            if days == 0 and " TTL " in ddl:
                self.c.command(f"ALTER TABLE {self.q(table)} REMOVE TTL")
            elif days > 0 and f"TTL {day} + toIntervalDay({days})" not in ddl:
                self.c.command(f"ALTER TABLE {self.q(table)} MODIFY TTL {day} + toIntervalDay({days})")


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
    node = _Node(client, database, cluster)
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
