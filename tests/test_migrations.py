"""The upgrade path: a store made by tokentrail 0.1.0 (migrations 1-2), upgraded by this one
(migration 3: codecs, trace index, rollups filled from the spans already there), with an older
tokentrail still writing to it, during the upgrade and after; an interrupted rollup build;
the retention TTL. The clock is fixed (rollup_data.NOW)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from rollup_data import NOW, rows, write

from tokentrail import queries
from tokentrail.config import resolve
from tokentrail.queries import Filters
from tokentrail.store import Schema, Store, forget_schemas, migrations, open_store
from tokentrail.store.migrations import MIGRATIONS, SNAPSHOT, migrate_node, sql_file

# -- tokentrail 0.1.0, as it shipped: its migrate() and its exporter's insert ------------------


def old_migrate(client: Any, db: str = "tokentrail") -> None:
    """tokentrail 0.1.0's migrate(): migrations 1 and 2, recorded without deduplication."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    client.command(
        f"""CREATE TABLE IF NOT EXISTS {db}.migrations
        (number UInt32, name String, applied_at DateTime64(6, 'UTC') DEFAULT now64(6))
        ENGINE = MergeTree ORDER BY number"""
    )
    done = {int(r[0]) for r in client.query(f"SELECT number FROM {db}.migrations").result_rows}
    for number, name, table in ((1, "create spans", "spans"), (2, "create budget_events", "budget_events")):
        if number in done:
            continue
        client.command(sql_file(MIGRATIONS[number - 1].steps[0].file, table=f"{db}.{table}"))  # type: ignore[union-attr]
        client.insert(f"{db}.migrations", [[number, name]], column_names=["number", "name"])


def old_insert(client: Any, db: str, payload: bytes, batch_id: str) -> None:
    """tokentrail 0.1.0's exporter insert: the batch id as the deduplication token, nothing else."""
    client.raw_insert(f"{db}.spans", None, insert_block=payload, fmt="JSONEachRow", settings={"insert_deduplication_token": batch_id})


def _payload(n: int, tag: str) -> bytes:
    return "".join(
        json.dumps(
            {"timestamp": f"2026-03-01 10:{k % 60:02d}:00", "trace_id": f"old-{tag}-{k}", "span_id": f"{tag}-{k}",
             "name": "chat gpt-4o", "operation": "chat", "request_model": "gpt-4o", "team": "legacy",
             "input_tokens": k + 1, "cost_usd": "0.000001000", "cost_status": "priced"}
        ) + "\n"
        for k in range(n)
    ).encode()  # fmt: skip


def _equal_figures(store: Store, now: Any = NOW, windows: tuple[Filters, ...] = (Filters(), Filters(since="30d"), Filters(since="7d", team="legacy"))) -> None:
    raw = Store(store.client, store.settings, Schema(store.database, None, frozenset({1, 2})))
    for f in windows:
        for fn in (queries.totals, queries.filter_values, queries.estimated_share):
            assert fn(store, f, now=now) == fn(raw, f, now=now)
        for by in ("model", "team", "day"):
            assert queries.report(store, by, f, now=now) == queries.report(raw, by, f, now=now)
        assert queries.top_traces(store, f, now=now) == queries.top_traces(raw, f, now=now)
    spans = store.rows(f"SELECT count(), sum(input_tokens), sum(cost_usd) FROM {store.table('spans')}")[0]
    assert store.rows(f"SELECT sum(spans), sum(input_tokens), sum(cost_usd) FROM {store.table('spend_hourly')}")[0] == spans
    assert store.rows(f"SELECT sum(spans), sum(input_tokens), sum(cost_usd) FROM {store.table('spend_daily')}")[0] == spans


def old_server_store(ch_server: Any, home: Path, prefix: str, traces: int) -> tuple[str, Any, Any]:
    """A database on the server made and filled by tokentrail 0.1.0: (name, admin client, settings)."""
    db = f"{prefix}_{uuid.uuid4().hex[:8]}"
    client = ch_server.client()
    old_migrate(client, db)
    settings = resolve(clickhouse_url=ch_server.url_for(db), home=home)
    write(client, settings, rows(traces))
    return db, client, settings


def _recorded(store: Store) -> list[tuple[int, int]]:
    return store.rows(f"SELECT number, count() FROM {store.table('migrations')} GROUP BY number ORDER BY number")


def test_upgrade_of_an_embedded_store_made_by_tokentrail_0_1(tt_home: Path) -> None:
    import clickhouse_connect

    settings = resolve(home=tt_home)
    settings.embedded_path.mkdir(parents=True)
    old = clickhouse_connect.get_client(dsn=f"chdb://{settings.embedded_path}")
    try:
        old_migrate(old)
        write(old, settings, rows(200))  # spans written by the old version
        old_insert(old, "tokentrail", _payload(30, "a"), "old-a")
    finally:
        old.close()
    forget_schemas()
    with open_store(settings) as store:
        assert _recorded(store) == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]
        assert not store.rollups  # the embedded store has none (its readers ingest the spool first)
        ddl = store.rows("SELECT create_table_query FROM system.tables WHERE database = 'tokentrail' AND name = 'spans'")[0][0]
        assert "`timestamp` DateTime64(6, 'UTC') CODEC(Delta(8), ZSTD(1))" in ddl and "CODEC(T64, ZSTD(1))" in ddl
        before = store.rows("SELECT count(), sum(input_tokens), sum(cost_usd) FROM tokentrail.spans")
        assert before[0][0] == len(rows(200)) + 30  # what the old version wrote, all there
        client = store.client
        # the old version keeps running: its migrate() is a no-op, its inserts land
        old_migrate(client)
        old_insert(client, "tokentrail", _payload(20, "b"), "old-b")
        old_insert(client, "tokentrail", _payload(20, "b"), "old-b")  # its retry: stored once
        assert _recorded(store) == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]
        assert store.rows("SELECT count() FROM tokentrail.spans WHERE team = 'legacy'") == [(50,)]
        assert queries.totals(store, Filters(team="legacy"), now=NOW).calls == 50
    forget_schemas()
    with open_store(settings) as store:  # a new process: nothing to apply, nothing recorded twice
        assert _recorded(store) == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]


def test_upgrade_of_a_server_made_by_tokentrail_0_1(ch_server: Any, tt_home: Path) -> None:
    db, client, settings = old_server_store(ch_server, tt_home, "old", 300)
    old_insert(client, db, _payload(30, "a"), "old-a")
    forget_schemas()
    with open_store(settings, ingest=False) as store:
        assert store.rollups and _recorded(store) == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]
        _equal_figures(store)  # the rollups were filled from what the old version wrote
        old_migrate(client, db)  # the old version keeps running
        old_insert(client, db, _payload(20, "b"), "old-b")
        old_insert(client, db, _payload(20, "b"), "old-b")
        assert store.rows(f"SELECT count() FROM {db}.spans WHERE team = 'legacy'") == [(50,)]
        _equal_figures(store)  # its inserts reach the rollups, once


def test_upgrade_of_a_server_while_an_old_version_writes(ch_server: Any, tt_home: Path) -> None:
    """The rollups are filled from a snapshot while inserts are held back for a moment (the old
    writer gets a retryable error, and retries its batch with the same token, as 0.1.0 does)."""
    db, client, settings = old_server_store(ch_server, tt_home, "up", 800)
    stop = threading.Event()
    sent: list[str] = []
    refused: list[str] = []

    def old_writer() -> None:
        writer = ch_server.client()
        i = 0
        while not stop.is_set():
            batch = f"w{i}"
            while True:
                try:
                    old_insert(writer, db, _payload(10, batch), batch)
                    break
                except Exception as e:  # the old exporter spools and retries the same batch
                    refused.append(str(e)[:80])
                    time.sleep(0.01)
            sent.append(batch)
            i += 1

    t = threading.Thread(target=old_writer)
    t.start()
    try:
        time.sleep(0.3)
        forget_schemas()
        with open_store(settings, ingest=False) as store:
            assert store.rollups
        time.sleep(0.3)
    finally:
        stop.set()
        t.join(30)
    assert len(sent) > 10
    print(f"old writer: {len(sent)} batches, {len(refused)} refused while the views were made: {set(refused)}")
    with open_store(settings, ingest=False) as store:
        assert store.rows(f"SELECT count(), uniqExact(span_id) FROM {db}.spans WHERE team = 'legacy'") == [(10 * len(sent), 10 * len(sent))]
        _equal_figures(store)
        assert _recorded(store) == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]
        assert not store.rows(f"SELECT name FROM system.tables WHERE database = '{db}' AND name = '{SNAPSHOT}'")
        ddl = store.rows(f"SELECT create_table_query FROM system.tables WHERE database = '{db}' AND name = 'spans'")[0][0]
        assert "max_parts_in_total" not in ddl  # inserts are let in again


def test_an_interrupted_rollup_build_is_built_again(ch_server: Any, tt_home: Path) -> None:
    db, client, settings = old_server_store(ch_server, tt_home, "int", 150)
    # a process died mid-build: its snapshot is there, two views made, a rollup half filled
    migrate_node(client, db, wait=0)  # the real build, complete
    client.command(f"DELETE FROM {db}.migrations WHERE number = 3")  # ... but it died before recording
    client.command(f"CREATE TABLE {db}.{SNAPSHOT} AS {db}.spans")
    client.command(f"DROP VIEW {db}.users_daily_mv")
    client.command(f"INSERT INTO {db}.spend_hourly SELECT * FROM {db}.spend_hourly LIMIT 5")  # doubled rows
    write(client, settings, rows(40, seed=5))  # written meanwhile (views partly there)
    with pytest.raises(AssertionError):  # a live build is waited for, not trampled
        assert 3 in migrate_node(client, db, wait=0.2, stale_after=3600)
    assert 3 in migrate_node(client, db, wait=0.2, stale_after=0)  # dead (no backfill running): rebuilt
    forget_schemas()
    with open_store(settings, ingest=False) as store:
        assert store.rollups
        _equal_figures(store)
        assert store.rows(f"SELECT sum(spans) FROM {db}.users_daily")[0][0] == store.rows(f"SELECT count() FROM {db}.spans")[0][0]


def test_retention_days_is_a_ttl_on_the_spans_and_every_rollup(ch_server: Any, tt_home: Path) -> None:
    db = "ttl_" + uuid.uuid4().hex[:8]
    url = ch_server.url_for(db)
    forget_schemas()
    with open_store(resolve(clickhouse_url=url, home=tt_home, retention_days=90), ingest=False) as store:
        write(store.client, store.settings, rows(100))
    client = ch_server.client()

    def ttls() -> dict[str, str]:
        out = {}
        for name, ddl in client.query(f"SELECT name, create_table_query FROM system.tables WHERE database = '{db}'").result_rows:
            if " TTL " in ddl:
                out[name] = ddl.split(" TTL ", 1)[1].split(" SETTINGS ")[0]
        return out

    assert ttls() == {t: f"{day} + toIntervalDay(90)" for t, day in migrations.RETENTION.items()}
    forget_schemas()
    with open_store(resolve(clickhouse_url=url, home=tt_home, retention_days=0), ingest=False):
        pass
    assert ttls() == {}
    # a TTL removes a day from the spans and the rollups alike. TTLs run on the server's clock:
    # these spans are on it too (the last 10 days), so the test holds on any date
    now = datetime.now(timezone.utc)
    forget_schemas()
    with open_store(resolve(clickhouse_url=url, home=tt_home, retention_days=5), ingest=False) as store:
        store.client.command(f"TRUNCATE TABLE {db}.spans")
        for t in migrations.RETENTION:
            if t != "spans":
                store.client.command(f"TRUNCATE TABLE {db}.{t}")
        cutoff = (now - timedelta(days=10)).strftime("%Y-%m-%d %H:%M:%S")
        write(store.client, store.settings, [r for r in rows(300, seed=3, now=now) if r["timestamp"] >= cutoff])
        before = store.rows(f"SELECT count() FROM {db}.spans")[0][0]
        for t in migrations.RETENTION:
            store.client.command(f"OPTIMIZE TABLE {db}.{t} FINAL")
        after = store.rows(f"SELECT count() FROM {db}.spans")[0][0]
        assert 0 < after < before
        assert store.rows(f"SELECT count() FROM {db}.spans WHERE toDate(timestamp) + 5 <= today()") == [(0,)]
        # the same figures, for windows inside the retention (at its edge, a trace that lost its
        # first spans still counts them in the trace index until its last day goes too)
        _equal_figures(store, now, (Filters(since="4d"), Filters(since="3d", team="search")))
