"""The server path against a real ClickHouse server (tests/chserver.py): every URL form the README
shows on a fresh server, the exporter, the CLI, budgets, migrations once per process and under
eight processes at once, and a server killed and restarted mid-run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import tokentrail
from tokentrail import runtime, testing
from tokentrail.cli import main as cli_main
from tokentrail.config import resolve
from tokentrail.store import forget_schemas, migrations, open_store, spool

COST = Decimal("0.000250000")


def make_spans(rt: runtime.Tokentrail, n: int, *, team: str = "search", start: int = 0) -> None:
    """n traces: a chain span and one priced model call under it ($0.00025, 100+i input tokens)."""
    for i in range(start, start + n):
        with rt.tracer.start_as_current_span("invoke_workflow demo", attributes={"gen_ai.operation.name": "invoke_workflow"}):
            with rt.tracer.start_as_current_span(
                "chat gpt-4o",
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.usage.input_tokens": 100 + i,
                    "gen_ai.usage.output_tokens": 10,
                    "tokentrail.cost.usd": str(COST),
                    "tokentrail.cost.status": "priced",
                    "tokentrail.team": team,
                },
            ):
                pass


@pytest.fixture
def server_rt(tt_home: Path, ch_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[runtime.Tokentrail]:
    """A runtime writing to a fresh database on the real server (TOKENTRAIL_CLICKHOUSE_URL set,
    so the CLI and the dashboard read the same store)."""
    monkeypatch.setenv("TOKENTRAIL_CLICKHOUSE_URL", ch_url)
    rt = tokentrail.configure(project="p")
    yield rt
    rt.shutdown()
    testing.reset()


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> Any:
    capsys.readouterr()
    assert cli_main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("path", ["/llm_costs", "/tokentrail", "", "/"])
def test_every_readme_url_form_works_on_a_fresh_server(
    ch_server: Any, tt_home: Path, path: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """http://user:pass@host:8123/db (db created when missing), and no db (tokentrail)."""
    client = ch_server.client()
    database = path.strip("/") or "tokentrail"
    for db in {database, "tokentrail"}:
        client.command(f"DROP DATABASE IF EXISTS {db} SYNC")
    forget_schemas()
    url = f"http://default:@127.0.0.1:{ch_server.http_port}{path}"
    monkeypatch.setenv("TOKENTRAIL_CLICKHOUSE_URL", url)
    rt = tokentrail.configure(project="p")
    try:
        make_spans(rt, 20)
        assert rt.flush()
        assert (rt.exporter.inserted_batches, rt.exporter.spooled_batches) == (1, 0)  # straight in, nothing spooled
    finally:
        rt.shutdown()
        testing.reset()
    assert spool.count(rt.settings.spool_dir) == 0
    report = _json(capsys, ["report", "--by", "team", "--format", "json"])
    assert report["rows"] == [
        {"team": "search", "calls": 20, "input_tokens": sum(range(100, 120)), "output_tokens": 200, "cache_read_tokens": 0,
         "cache_write_tokens": 0, "reasoning_tokens": 0, "cost_usd": str(COST * 20), "unpriced_calls": 0, "errors": 0}
    ]  # fmt: skip
    rows = _json(capsys, ["sql", f"SELECT count() AS n, uniqExact(span_id) AS spans FROM {database}.spans", "--format", "json"])
    assert rows == [{"n": 40, "spans": 40}]
    # the URL's database holds everything; nothing went to another one
    tables = {r[0] for r in client.query(f"SHOW TABLES FROM {database}").result_rows}
    assert {"spans", "budget_events", "migrations", "spend_hourly", "spend_daily", "trace_index"} <= tables
    databases = {r[0] for r in client.query("SELECT name FROM system.databases").result_rows}
    assert database in databases and (database == "tokentrail") == ("tokentrail" in databases)


def test_cli_sql_report_budgets_ingest_on_the_server(
    server_rt: runtime.Tokentrail, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = server_rt.settings.database
    make_spans(server_rt, 30, team="search")
    make_spans(server_rt, 10, team="growth", start=30)
    assert server_rt.flush()
    rows = _json(capsys, ["sql", f"SELECT team, count() AS n, sum(cost_usd) AS c FROM {db}.spans WHERE operation = 'chat' GROUP BY team ORDER BY team", "--format", "json"])
    assert rows == [{"team": "growth", "n": 10, "c": str(COST * 10)}, {"team": "search", "n": 30, "c": str(COST * 30)}]
    # unqualified names resolve in the URL's database
    assert _json(capsys, ["sql", "SELECT count() AS n FROM spans", "--format", "json"]) == [{"n": 80}]
    total = _json(capsys, ["report", "--format", "json"])["total"]
    assert (total["calls"], total["cost_usd"], total["input_tokens"]) == (40, str(COST * 40), sum(range(100, 140)))
    # budgets read their spend from the server
    (tmp_path / "tokentrail.toml").write_text(
        '[[budgets]]\nname = "search"\nlimit_usd = 1\nperiod = "total"\nscope = { team = "search" }\n'
    )
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert cli_main(["budgets"]) == 0
    out = capsys.readouterr().out
    assert "search" in out and "$0.0075" in out, out  # 30 calls at $0.00025
    # ingest drains a spooled batch into the server once
    payload = b'{"timestamp":"2026-11-30 10:00:00","trace_id":"t1","span_id":"s1","name":"chat x","operation":"chat","cost_usd":"0.5"}\n'
    spool.write(server_rt.settings.spool_dir, "spans", "batch-one", payload)
    capsys.readouterr()
    assert cli_main(["ingest"]) == 0
    assert "1 batch" in capsys.readouterr().out
    spool.write(server_rt.settings.spool_dir, "spans", "batch-one", payload)  # replayed: stored once
    assert cli_main(["ingest"]) == 0
    assert _json(capsys, ["sql", f"SELECT count() AS n FROM {db}.spans WHERE span_id = 's1'", "--format", "json"]) == [{"n": 1}]


def test_migrations_run_once_per_process(
    server_rt: runtime.Tokentrail, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = migrations.migrate_node

    def counting(client: Any, database: str, *a: Any, **kw: Any) -> set[int]:
        calls.append(database)
        return real(client, database, *a, **kw)

    monkeypatch.setattr(migrations, "migrate_node", counting)
    make_spans(server_rt, 5)
    assert server_rt.flush()
    for _ in range(3):  # the CLI, the dashboard and a budget refresh open the store again and again
        with open_store(server_rt.settings) as store:
            assert store.rollups
    server_rt.exporter._client = None  # a reconnect (after a failed insert)
    make_spans(server_rt, 5)
    assert server_rt.flush()
    assert calls == [server_rt.settings.database]
    with open_store(server_rt.settings) as store:
        assert store.rows(f"SELECT number, count() FROM {store.table('migrations')} GROUP BY number ORDER BY number") == [
            (m.number, 1) for m in migrations.MIGRATIONS
        ]


MIGRATOR = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tokentrail.config import resolve
    from tokentrail.store import open_store
    url, go, i = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    settings = resolve(clickhouse_url=url, home=sys.argv[4])
    while not go.exists():
        time.sleep(0.005)
    with open_store(settings) as store:
        rows = "".join('{"timestamp":"2026-11-30 10:00:00","trace_id":"t%s","span_id":"s%s-%d","name":"chat m",'
                       '"operation":"chat","team":"t","input_tokens":1,"cost_usd":"0.000001"}\\n' % (i, i, k) for k in range(100))
        store.client.raw_insert(store.table("spans"), None, insert_block=rows.encode(), fmt="JSONEachRow",
                                settings={"insert_deduplication_token": "b" + i})
        print(sorted(store.schema.applied), store.rollups)
    """
)


def test_eight_processes_migrate_one_fresh_server_at_once(ch_url: str, tmp_path: Path) -> None:
    script = tmp_path / "migrator.py"
    script.write_text(MIGRATOR)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), ch_url, str(go), str(i), str(tmp_path / f"home{i}")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for i in range(8)
    ]
    time.sleep(2.0)  # all of them imported and waiting
    go.touch()
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
        assert out.strip() == "[1, 2, 3, 4, 5] True", out + err[-2000:]
    settings = resolve(clickhouse_url=ch_url, home=tmp_path / "reader")
    forget_schemas()
    with open_store(settings) as store:
        t = store.table
        # one schema, each migration recorded once
        assert store.rows(f"SELECT number, count() FROM {t('migrations')} GROUP BY number ORDER BY number") == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]
        views = store.rows(f"SELECT name FROM system.tables WHERE database = '{store.database}' AND engine = 'MaterializedView' ORDER BY name")
        assert [v[0] for v in views] == ["spend_daily_mv", "spend_hourly_mv", "trace_index_mv", "traces_hourly_mv", "users_daily_mv"]
        assert store.rows(f"SELECT count() FROM system.tables WHERE database = '{store.database}' AND name LIKE '%backfill%'") == [(0,)]
        # every process's 100 rows, once, and in the rollups once
        assert store.rows(f"SELECT count(), uniqExact(span_id), sum(cost_usd) FROM {t('spans')}") == [(800, 800, Decimal("0.0008"))]
        assert store.rows(f"SELECT sum(spans), sum(cost_usd) FROM {t('spend_hourly')}") == [(800, Decimal("0.0008"))]
        assert store.rows(f"SELECT sum(spans), sum(cost_usd) FROM {t('spend_daily')} WHERE team = 't'") == [(800, Decimal("0.0008"))]


def test_server_killed_and_restarted_mid_run_loses_and_doubles_nothing(tt_home: Path, tmp_path: Path) -> None:
    from chserver import ClickHouseServer

    server = ClickHouseServer(tmp_path / "ch").start()
    try:
        url = server.url_for("ledger")
        rt = tokentrail.configure(home=tt_home, clickhouse_url=url, project="p")
        rt.exporter.retry_interval = 0.5  # retry the spool soon after the server is back
        try:
            make_spans(rt, 50)
            assert rt.flush()
            server.kill()  # a crash: SIGKILL
            make_spans(rt, 50, start=50)
            assert rt.flush()  # the application never waits: the batch goes to the spool
            assert rt.exporter.spooled_batches >= 1 and spool.count(rt.settings.spool_dir) >= 1
            server.start()  # same data directory, same port
            time.sleep(0.6)
            make_spans(rt, 50, start=100)
            assert rt.flush()
            deadline = time.monotonic() + 20
            while spool.count(rt.settings.spool_dir) and time.monotonic() < deadline:  # drained by the exporter itself
                time.sleep(0.6)
                make_spans(rt, 1, start=1000)
                assert rt.flush()
            assert spool.count(rt.settings.spool_dir) == 0
        finally:
            rt.shutdown()
            testing.reset()
        extra = rt.exporter.inserted_batches  # the 1-trace batches sent while waiting
        assert extra >= 2
        with open_store(resolve(home=tt_home, clickhouse_url=url), ingest=False) as store:
            got = store.rows(
                f"SELECT count(), uniqExact(span_id), countIf(operation = 'chat'), sumIf(input_tokens, input_tokens < 1000) "
                f"FROM {store.table('spans')}"
            )[0]
            chats = got[2]
            assert got[0] == got[1] == 2 * chats  # nothing twice
            assert chats >= 150 and got[3] == sum(range(100, 250))  # the 150 of the three batches, every one
            cost = store.rows(f"SELECT sum(cost_usd) FROM {store.table('spans')}")[0][0]
            assert cost == COST * chats
            # the rollups hold the same, once
            assert store.rows(f"SELECT sum(spans), sum(cost_usd) FROM {store.table('spend_hourly')} WHERE operation = 'chat'") == [(chats, cost)]
    finally:
        server.stop()
    assert not server.running


def test_https_url_form(ch_server: Any, tt_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """https://user:pass@host:port/db: TLS whatever the port (clickhouse-connect alone would take
    TLS from port 8443 only); a private CA through ?ca_cert=. The local server speaks HTTP, so a
    TLS proxy with a self-signed certificate stands in front of it."""
    from chserver import TlsProxy

    proxy = TlsProxy(ch_server.http_port)
    try:
        url = f"https://default:@127.0.0.1:{proxy.port}/llm_tls?ca_cert={TlsProxy.cert}"
        monkeypatch.setenv("TOKENTRAIL_CLICKHOUSE_URL", url)
        forget_schemas()
        rt = tokentrail.configure(project="p")
        try:
            make_spans(rt, 5)
            assert rt.flush()
            assert rt.exporter.inserted_batches + rt.exporter.spooled_batches == 1
        finally:
            rt.shutdown()
            testing.reset()
        capsys.readouterr()
        assert cli_main(["ingest"]) == 0  # a batch the exporter spooled (a TLS handshake slower than its timeout on a busy machine)
        assert _json(capsys, ["sql", "SELECT count() AS n, sum(cost_usd) AS c FROM llm_tls.spans WHERE operation = 'chat'", "--format", "json"]) == [
            {"n": 5, "c": str(COST * 5)}
        ]
    finally:
        proxy.close()


def test_a_database_dropped_under_a_running_exporter_is_made_again(server_rt: runtime.Tokentrail, ch_server: Any) -> None:
    server_rt.exporter.retry_interval = 0.0  # no breaker wait: every batch tries the server
    make_spans(server_rt, 5)
    assert server_rt.flush() and server_rt.exporter.inserted_batches == 1
    ch_server.client().command(f"DROP DATABASE {server_rt.settings.database} SYNC")  # an admin's mistake
    make_spans(server_rt, 5, start=5)
    assert server_rt.flush()  # refused (no table): spooled, and the schema forgotten
    make_spans(server_rt, 5, start=10)
    assert server_rt.flush()  # migrated again on reconnect, inserted, the spool drained
    with open_store(server_rt.settings) as store:
        assert store.rows(f"SELECT countIf(operation = 'chat') FROM {store.table('spans')}") == [(10,)]
    assert spool.count(server_rt.settings.spool_dir) == 0


def test_budgets_enforce_the_spend_the_server_holds(ch_url: str, tt_home: Path, clock: Any) -> None:
    """Another process already spent $0.99 of a $1 team budget (its spans are on the server): a
    new process refuses a $0.02 call before the provider is called."""
    from langchain_fakes import UsageChatModel

    seed = tokentrail.configure(home=tt_home, clickhouse_url=ch_url, project="p")
    try:
        with open_store(seed.settings) as store:
            payload = "".join(
                json.dumps({"timestamp": f"{clock.now - timedelta(minutes=5):%Y-%m-%d %H:%M:%S}", "trace_id": f"t{i}",
                            "span_id": f"s{i}", "name": "chat m", "operation": "chat", "team": "search", "cost_usd": "0.099"}) + "\n"
                for i in range(10)
            ).encode()  # fmt: skip
            store.client.raw_insert(store.table("spans"), None, insert_block=payload, fmt="JSONEachRow")
    finally:
        seed.shutdown()
        testing.reset()
    rt = tokentrail.configure(
        home=tt_home, clickhouse_url=ch_url, project="p",
        prices={"fake-model": {"input_per_mtok": 0, "output_per_mtok": 200}},  # 100 output tokens: $0.02
        budgets=[tokentrail.Budget(name="search", limit_usd=1, period="total", scope={"team": "search"})],
    )  # fmt: skip
    try:
        assert rt.budgets is not None and rt.budgets.refresh()
        model = UsageChatModel(model_name="fake-model", response_model=None, usage={"input_tokens": 5, "output_tokens": 100, "total_tokens": 105})
        with tokentrail.attributes(team="search"), pytest.raises(tokentrail.BudgetExceeded) as refused:
            model.invoke("hi", config={"callbacks": [tokentrail.langchain_handler()]})
        assert refused.value.spent_usd == Decimal("0.99") and refused.value.limit_usd == Decimal("1")
        assert model._calls == 0  # refused before the provider
        with tokentrail.attributes(team="growth"):  # another team's call is not in that budget
            model.invoke("hi", config={"callbacks": [tokentrail.langchain_handler()]})
    finally:
        rt.shutdown()
        testing.reset()
