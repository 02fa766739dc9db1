"""Store errors by kind, against the real server's own answers: a wrong password is never
"unreachable", a missing right is named with its GRANT, a table that is not tokentrail's is a
schema problem; and in every case the application's spans wait in the spool."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tokentrail
from tokentrail import runtime
from tokentrail.cli import main as cli_main
from tokentrail.config import resolve
from tokentrail.store import (
    connect_server,
    ensure_schema,
    errors,
    forget_schemas,
    open_store,
    problem,
    spool,
)


def _db() -> str:
    return "e_" + uuid.uuid4().hex[:10]


def _fail(settings: Any) -> BaseException:
    forget_schemas()
    try:
        with open_store(settings):
            pass
    except Exception as e:
        return e
    raise AssertionError("the store opened")


def _cli_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    capsys.readouterr()
    assert cli_main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture
def spooling(tt_home: Path, runtimes: list[runtime.Tokentrail]) -> Iterator[Any]:
    """make(url): a runtime on that URL that made 10 spans and flushed; its spool is checked after."""
    made = runtimes

    def make(url: str) -> runtime.Tokentrail:
        forget_schemas()
        rt = tokentrail.configure(home=tt_home, clickhouse_url=url, project="p")
        for i in range(10):
            with rt.tracer.start_as_current_span("chat m", attributes={"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": i}):
                pass
        assert rt.flush()
        made.append(rt)
        return rt

    yield make


def test_wrong_password_is_authentication_never_unreachable(
    ch_server: Any, tt_home: Path, spooling: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = ch_server.url_for(_db(), user="writer", password="not-the-password")
    p = problem(_fail(resolve(clickhouse_url=url)), resolve(clickhouse_url=url))
    assert (p.kind, p.transient) == (errors.AUTHENTICATION, False)
    assert "refused user 'writer': wrong password or no such user" in p.message
    monkeypatch.setenv("TOKENTRAIL_CLICKHOUSE_URL", url)
    line = _cli_line(capsys, ["report"])
    assert line.startswith("tokentrail: report: ClickHouse at http://127.0.0.1:") and "refused user 'writer'" in line
    assert "unreachable" not in line and "cannot reach" not in line and "not-the-password" not in line
    # the application loses nothing: its spans wait in the spool
    rt = spooling(url)
    assert rt.exporter.inserted_batches == 0 and spool.count(rt.settings.spool_dir) == rt.exporter.spooled_batches >= 1


def test_a_database_the_user_may_not_create(ch_server: Any, spooling: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    db = _db()
    url = ch_server.url_for(db, user="writer", password="writer-pw")
    p = problem(_fail(resolve(clickhouse_url=url)), resolve(clickhouse_url=url))
    assert p.kind == errors.MISSING
    assert p.message.startswith(f"database {db} does not exist on http://127.0.0.1:{ch_server.http_port}/{db} and user 'writer' may not create it")
    assert f"GRANT CREATE DATABASE ON {db}.* TO writer" in p.message
    monkeypatch.setenv("TOKENTRAIL_CLICKHOUSE_URL", url)
    assert "needs CREATE DATABASE" in _cli_line(capsys, ["report"])
    rt = spooling(url)
    assert rt.exporter.inserted_batches == 0 and spool.count(rt.settings.spool_dir) >= 1


def test_tables_the_user_may_not_create(ch_server: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    db = _db()
    ch_server.client().command(f"CREATE DATABASE {db}")  # an admin made the database, not the tables
    url = ch_server.url_for(db, user="writer", password="writer-pw")
    p = problem(_fail(resolve(clickhouse_url=url)), resolve(clickhouse_url=url))
    assert p.kind == errors.MISSING
    assert f"the tables of {db} do not exist" in p.message and "may not create them (needs CREATE TABLE)" in p.message
    assert "run tokentrail once with a user that may" in p.message


def test_an_application_user_without_ddl_rights_writes_to_a_migrated_database(
    ch_server: Any, spooling: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _db()
    admin = ch_server.url_for(db)
    with open_store(resolve(clickhouse_url=admin)):
        pass  # migrated by an admin
    url = ch_server.url_for(db, user="writer", password="writer-pw")
    rt = spooling(url)  # no DDL on the way: every migration is recorded
    assert (rt.exporter.inserted_batches, rt.exporter.spooled_batches) == (1, 0)
    viewer = ch_server.url_for(db, user="viewer", password="viewer-pw")
    monkeypatch.setenv("TOKENTRAIL_CLICKHOUSE_URL", viewer)
    capsys.readouterr()
    assert cli_main(["sql", f"SELECT count() FROM {db}.spans", "--format", "csv"]) == 0  # a read-only user reads
    assert capsys.readouterr().out.split() == ["count()", "10"]


def test_a_user_who_may_not_insert_is_a_permission_problem(ch_server: Any, spooling: Any) -> None:
    db = _db()
    with open_store(resolve(clickhouse_url=ch_server.url_for(db))):
        pass
    url = ch_server.url_for(db, user="viewer", password="viewer-pw")
    rt = spooling(url)
    assert rt.exporter.inserted_batches == 0 and spool.count(rt.settings.spool_dir) >= 1
    client = connect_server(url)
    try:
        ensure_schema(client, rt.settings)
        client.raw_insert(f"{db}.spans", None, insert_block=b'{"span_id":"x"}\n', fmt="JSONEachRow")
        raise AssertionError("the insert went through")
    except Exception as e:
        p = problem(e, rt.settings)
    finally:
        client.close()
    assert p.kind == errors.PERMISSION
    assert f"user 'viewer' may not use {db}.spans on ClickHouse at" in p.message
    assert f"GRANT INSERT ON {db}.spans TO viewer" in p.message


def test_a_spans_table_that_is_not_tokentrails(ch_server: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    db = _db()
    admin = ch_server.client()
    admin.command(f"CREATE DATABASE {db}")
    admin.command(f"CREATE TABLE {db}.spans (id UInt64, timestamp DateTime) ENGINE = MergeTree ORDER BY id")
    url = ch_server.url_for(db)
    p = problem(_fail(resolve(clickhouse_url=url)), resolve(clickhouse_url=url))
    assert p.kind == errors.SCHEMA
    assert f"table {db}.spans is not tokentrail's (it lacks timestamp DateTime64(6, 'UTC'), duration_ms Float64" in p.message
    assert "point TOKENTRAIL_CLICKHOUSE_URL at a database of its own" in p.message
    # and tokentrail changed nothing there
    assert admin.query(f"SHOW TABLES FROM {db}").result_rows == [("spans",)]
    monkeypatch.setenv("TOKENTRAIL_CLICKHOUSE_URL", url)
    assert "is not tokentrail's" in _cli_line(capsys, ["report"])


def test_unreachable_and_timed_out_are_transient(tt_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://default:@127.0.0.1:{port}/x"
    p = problem(_fail(resolve(clickhouse_url=url)), resolve(clickhouse_url=url))
    assert (p.kind, p.transient) == (errors.UNREACHABLE, True)
    assert p.message == (
        f"cannot reach ClickHouse at http://127.0.0.1:{port}/x (connection refused); "
        "check TOKENTRAIL_CLICKHOUSE_URL and that the server is up"
    )
    with socket.socket() as hung:  # accepts, never answers
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        url = f"http://127.0.0.1:{hung.getsockname()[1]}"
        try:
            connect_server(url, connect_timeout=0.5, send_receive_timeout=0.5)
            raise AssertionError("connected")
        except Exception as e:
            p = problem(e, resolve(clickhouse_url=url))
    assert (p.kind, p.transient) == (errors.TIMEOUT, True)
    assert "did not answer in time" in p.message
