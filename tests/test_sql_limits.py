"""Limits on user SQL (time, memory, result rows), in the CLI and on the dashboard's SQL page:
a runaway SELECT stops at the limit with a one-line error naming it and how to change it, and
the store is usable right after. Read-only still refuses writes, SETTINGS and table functions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chserver import ClickHouseServer

from tokentrail.cli import main
from tokentrail.config import resolve
from tokentrail.queries import SqlError, run_sql
from tokentrail.store import open_store

RUNAWAY = "SELECT count() FROM numbers(10000000000000)"


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    ("env", "query", "limit", "fix"),
    [
        ({"TOKENTRAIL_SQL_MAX_SECONDS": "1"}, RUNAWAY, "the 1 s time limit (max_execution_time)", "TOKENTRAIL_SQL_MAX_SECONDS"),
        (
            {"TOKENTRAIL_SQL_MAX_MEMORY": "64MiB"},
            "SELECT groupArray(number) FROM numbers(100000000)",
            "the 64 MiB memory limit (max_memory_usage)",
            "TOKENTRAIL_SQL_MAX_MEMORY",
        ),
        ({"TOKENTRAIL_SQL_MAX_ROWS": "1000"}, "SELECT number FROM numbers(5000)", "the 1,000 rows allowed (max_result_rows)", "TOKENTRAIL_SQL_MAX_ROWS"),
    ],
)
def test_cli_stops_at_the_limit_in_one_line(
    tt_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, env: dict[str, str], query: str, limit: str, fix: str
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(["sql", query]) == 1
    captured = capsys.readouterr()
    line = _one_line(captured.err)
    assert line.startswith("tokentrail: sql: ") and limit in line and fix in line
    assert captured.out == ""
    # the store is usable right after
    assert main(["sql", "SELECT 40 + 2 AS n", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": 42}]


def test_the_default_time_limit_is_30_seconds(tt_home: Path) -> None:
    settings = resolve()
    assert settings.sql_max_seconds == 30
    with open_store(settings) as store:
        [(seconds, readonly)] = run_sql(store, "SELECT getSetting('max_execution_time'), getSetting('readonly')").rows
    assert (seconds, readonly) == (30, 1)


def test_the_query_cannot_lift_the_limits(tt_home: Path) -> None:
    with open_store(resolve()) as store:
        for sql in (f"{RUNAWAY} SETTINGS max_execution_time = 0", "SELECT * FROM file('/etc/passwd', 'LineAsString')"):
            with pytest.raises(SqlError) as e:
                run_sql(store, sql)
            assert "read-only" in str(e.value)


def test_a_server_gets_the_same_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with ClickHouseServer(tmp_path / "ch") as server:
        monkeypatch.setenv("TOKENTRAIL_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("TOKENTRAIL_CLICKHOUSE_URL", server.url)
        monkeypatch.setenv("TOKENTRAIL_SQL_MAX_SECONDS", "1")
        assert main(["sql", RUNAWAY]) == 1
        assert "the 1 s time limit" in _one_line(capsys.readouterr().err)
        assert main(["sql", "INSERT INTO tokentrail.spans (span_id) VALUES ('x')"]) == 1
        assert "read-only" in _one_line(capsys.readouterr().err)
        assert main(["sql", "SELECT count() AS n FROM tokentrail.spans", "--format", "json"]) == 0
        assert json.loads(capsys.readouterr().out) == [{"n": 0}]


def test_dashboard_sql_page_stops_a_runaway_query(tt_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    from tokentrail.dashboard import APP_PATH
    from tokentrail.dashboard import data as dash_data

    monkeypatch.setenv("TOKENTRAIL_SQL_MAX_SECONDS", "1")
    dash_data.refresh()
    at = AppTest.from_file(str(APP_PATH), default_timeout=60).run()
    at.switch_page("views/sql.py").run()

    def submit(sql: str) -> None:
        at.text_area(key="tt_sql").set_value(sql)
        next(b for b in at.get("button") if getattr(b, "label", "") == "Run").click().run()

    submit(RUNAWAY)
    assert not at.exception
    [error] = at.error
    assert "the 1 s time limit (max_execution_time)" in error.value and "TOKENTRAIL_SQL_MAX_SECONDS" in error.value
    assert "\n" not in error.value
    submit("SELECT 40 + 2 AS n")  # usable right after
    assert not at.error and at.dataframe[0].value["n"][0] == 42
    dash_data.refresh()
