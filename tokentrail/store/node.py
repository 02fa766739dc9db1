"""One ClickHouse node's DDL: tables, alters, the migrations record, and the one step that is not
idempotent, the rollup build (see `migrations.py` for why it is safe when many processes migrate
one server at once)."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from .ddl import (
    _EXISTS,
    BACKFILL_QUERY_ID,
    RETENTION,
    SNAPSHOT,
    Alter,
    Migration,
    Table,
    applied,
    error_code,
    sql_file,
)
from .errors import SCHEMA, StoreError, StoreProblem
from .schema import SPANS_COLUMNS

logger = logging.getLogger("tokentrail.store")


class Node:
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
