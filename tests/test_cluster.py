"""A ClickHouse cluster of two local servers as two shards (`remote_servers` in their config):
`cluster = "tt"` makes the tables on every shard and Distributed tables over them; rows spread
over both shards; every question answers what a single node with the same spans answers;
a batch re-sent through the Distributed table is stored once, also when a shard was down.

Not testable here: replicas (ReplicatedMergeTree needs Keeper) and ON CLUSTER DDL (refused
without Keeper), so tokentrail creates the tables node by node."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chserver import cluster_of_two
from rollup_data import NOW, rows, write

import tokentrail
from tokentrail import queries, testing
from tokentrail.budgets import Budget
from tokentrail.budgets import status as budget_status
from tokentrail.config import resolve
from tokentrail.queries import Filters
from tokentrail.store import forget_schemas, open_store, spool


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Any]]:
    servers = cluster_of_two(tmp_path_factory.mktemp("cluster"))
    for s in servers:
        s.start()
    yield servers
    for s in servers:
        s.stop()


def _settings(node: Any, db: str, home: Path, **kw: Any) -> Any:
    return resolve(clickhouse_url=node.url_for(db), home=home, cluster="tt", **kw)


def test_tables_on_every_shard_and_rows_spread_over_both(nodes: list[Any], tt_home: Path) -> None:
    forget_schemas()
    rt = tokentrail.configure(home=tt_home, clickhouse_url=nodes[0].url_for("spread"), cluster="tt", project="p")
    try:
        for i in range(400):
            with rt.tracer.start_as_current_span("chat gpt-4o", attributes={"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": i, "tokentrail.cost.usd": "0.000001"}):
                pass
        assert rt.flush()
        assert (rt.exporter.inserted_batches, rt.exporter.spooled_batches) == (1, 0)
    finally:
        rt.shutdown()
        testing.reset()
    per_node = []
    for n in nodes:
        c = n.client()
        tables = dict(c.query("SELECT name, engine FROM system.tables WHERE database = 'spread'").result_rows)
        assert tables["spans"] == "Distributed" and tables["spans_local"] == "MergeTree"
        assert tables["spend_hourly"] == "Distributed" and tables["spend_hourly_local"] == "SummingMergeTree"
        assert tables["spend_hourly_mv"] == "MaterializedView" and "migrations" in tables
        assert c.query("SELECT number FROM spread.migrations ORDER BY number").result_rows == [(1,), (2,), (3,), (4,), (5,)]
        per_node.append(c.query("SELECT count(), sum(input_tokens) FROM spread.spans_local").result_rows[0])
        # through the Distributed table, every node reads the whole
        assert c.query("SELECT count(), sum(input_tokens), sum(cost_usd) FROM spread.spans").result_rows[0][:2] == (400, sum(range(400)))
    assert all(count > 50 for count, _ in per_node), per_node  # spread by trace id over both shards
    assert sum(c for c, _ in per_node) == 400


@pytest.fixture(scope="module")
def pair(nodes: list[Any], tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """(cluster settings, single-node settings), the same spans in each."""
    home = tmp_path_factory.mktemp("pair")
    spans = rows(250, seed=23)
    forget_schemas()
    clustered = _settings(nodes[0], "pair_cluster", home)
    single = resolve(clickhouse_url=nodes[0].url_for("pair_single"), home=home)
    for s in (clustered, single):
        with open_store(s, ingest=False) as store:
            write(store.client, s, spans)
    return clustered, single


def test_every_question_answers_as_on_a_single_node(pair: tuple[Any, Any]) -> None:
    clustered, single = pair
    with open_store(clustered, ingest=False) as c, open_store(single, ingest=False) as s:
        assert c.rollups and s.rollups and c.schema.cluster == "tt"
        for f in (Filters(since="30d"), Filters(since="7d", team="search"), Filters(since="20d", user_id="bob")):
            for fn in (queries.totals, queries.filter_values, queries.month_forecast, queries.estimated_share, queries.error_costs, queries.cache_savings):
                assert fn(c, f, now=NOW) == fn(s, f, now=NOW)
            for by in ("model", "team", "user", "day"):
                assert queries.report(c, by, f, now=NOW) == queries.report(s, by, f, now=NOW)
            assert queries.breakdown(c, "tag", f, now=NOW) == queries.breakdown(s, "tag", f, now=NOW)
            assert queries.spend_series(c, f, by="model", bucket="hour", now=NOW) == queries.spend_series(s, f, by="model", bucket="hour", now=NOW)
            assert queries.what_if(c, f, "gpt-4o-mini", "openai", now=NOW) == queries.what_if(s, f, "gpt-4o-mini", "openai", now=NOW)
            top = queries.top_traces(c, f, now=NOW)
            assert top == queries.top_traces(s, f, now=NOW)
            if top:
                assert queries.trace_spans(c, top[0].trace_id) == queries.trace_spans(s, top[0].trace_id)
        budgets = (Budget(name="m", limit_usd=5, period="month", action="warn"), Budget(name="t", limit_usd=1, period="week", scope={"team": "*"}, action="warn"))
        from dataclasses import replace

        assert budget_status.status(c, replace(clustered, budgets=budgets), NOW) == budget_status.status(s, replace(single, budgets=budgets), NOW)
        assert queries.span_count(c) == queries.span_count(s) > 500


def test_a_batch_resent_through_the_distributed_table_is_stored_once(nodes: list[Any], tt_home: Path) -> None:
    forget_schemas()
    settings = _settings(nodes[0], "dedup", tt_home)
    payload = "".join(
        json.dumps({"timestamp": "2026-03-01 10:00:00", "trace_id": f"tr{i}", "span_id": f"sp{i}", "name": "chat m", "operation": "chat", "input_tokens": 1}) + "\n"
        for i in range(300)
    ).encode()
    with open_store(settings, ingest=False) as store:
        pass
    spool.write(settings.spool_dir, "spans", "batch-a", payload)
    spool.write(settings.spool_dir, "spans", "batch-a", payload)  # replayed
    nodes[1].kill()  # a shard is down: the batch cannot be stored whole
    try:
        with open_store(settings) as store:
            raise AssertionError("ingested with a shard down")
    except Exception as e:
        assert "AssertionError" not in type(e).__name__
    assert spool.count(settings.spool_dir) >= 1  # kept for later: nothing lost
    nodes[1].start()
    time.sleep(0.3)
    with open_store(settings) as store:  # the retry: the first shard's part is deduplicated
        assert spool.count(settings.spool_dir) == 0
        assert store.rows("SELECT count(), uniqExact(span_id) FROM dedup.spans") == [(300, 300)]
        assert store.rows("SELECT sum(spans) FROM dedup.spend_hourly") == [(300,)]
    local = [n.client().query("SELECT count() FROM dedup.spans_local").result_rows[0][0] for n in nodes]
    assert sum(local) == 300 and min(local) > 0


def test_a_cluster_the_server_does_not_know_is_one_clear_line(nodes: list[Any], tt_home: Path) -> None:
    from tokentrail.store import problem

    forget_schemas()
    settings = resolve(clickhouse_url=nodes[0].url_for("nope"), home=tt_home, cluster="elsewhere")
    try:
        with open_store(settings):
            raise AssertionError("opened")
    except Exception as e:
        message = problem(e, settings).message
    assert message == (
        "the server has no cluster 'elsewhere' (see system.clusters); fix the cluster setting, "
        "or define it under <remote_servers> in every node's config"
    )
