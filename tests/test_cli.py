"""The `tokentrail` command: sql, report, prices, ingest, dashboard, budgets, and one-line errors."""

from __future__ import annotations

import csv
import fcntl
import importlib.util
import io
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from clocks import DEFAULT_NOW, FixedClock

from tokentrail import cli, runtime
from tokentrail.cli import main
from tokentrail.store import spool

NOW = DEFAULT_NOW  # the `clock` fixture's time: --since 7d counts back from it


def _ns(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000_000


def _call(rt: runtime.Tokentrail, model: str, team: str, cost: str | None, when: datetime, inp: int, out: int) -> None:
    attrs: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "gen_ai.provider.name": "openai",
        "tokentrail.team": team,
        "gen_ai.usage.input_tokens": inp,
        "gen_ai.usage.output_tokens": out,
        "tokentrail.cost.status": "priced" if cost else "unpriced",
    }
    if cost:
        attrs["tokentrail.cost.usd"] = cost
    span = rt.tracer.start_span(f"chat {model}", start_time=_ns(when), attributes=attrs)
    span.end(end_time=_ns(when) + 1_000_000)


@pytest.fixture
def seeded(tt: runtime.Tokentrail, clock: FixedClock) -> runtime.Tokentrail:
    _call(tt, "gpt-4o", "search", "0.001234567", NOW - timedelta(days=10), 1000, 100)
    _call(tt, "gpt-4o", "growth", "0.002000000", NOW - timedelta(hours=5), 2000, 50)
    _call(tt, "gpt-4o-mini", "search", "0.000010000", NOW - timedelta(hours=2), 300, 20)
    _call(tt, "acme-llm-7b", "platform", None, NOW - timedelta(hours=1), 40, 60)
    assert tt.flush()
    return tt


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("tokentrail"), err
    return lines[0]


# -- sql ------------------------------------------------------------------------------------
def test_sql_json_csv_table(seeded: runtime.Tokentrail, capsys: pytest.CaptureFixture[str]) -> None:
    q = "SELECT request_model, count() AS n, sum(cost_usd) AS cost FROM tokentrail.spans GROUP BY 1 ORDER BY 1"
    assert main(["sql", q, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == [
        {"request_model": "acme-llm-7b", "n": 1, "cost": None},
        {"request_model": "gpt-4o", "n": 2, "cost": "0.003234567"},  # Decimal as an exact string
        {"request_model": "gpt-4o-mini", "n": 1, "cost": "0.000010000"},
    ]
    assert main(["sql", q, "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows == [["request_model", "n", "cost"], ["acme-llm-7b", "1", ""], ["gpt-4o", "2", "0.003234567"], ["gpt-4o-mini", "1", "0.000010000"]]
    assert main(["sql", q]) == 0
    out = capsys.readouterr().out
    assert "gpt-4o-mini" in out and "0.003234567" in out and "NULL" in out and "3 rows" in out


def test_sql_from_stdin(seeded: runtime.Tokentrail, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("SELECT count() AS n FROM tokentrail.spans;\n"))
    assert main(["sql", "-", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": 4}]


def test_sql_refuses_writes_in_one_line(seeded: runtime.Tokentrail, capsys: pytest.CaptureFixture[str]) -> None:
    for stmt in ("DROP TABLE tokentrail.spans", "INSERT INTO tokentrail.spans (span_id) VALUES ('x')"):
        assert main(["sql", stmt]) == 1
        line = _one_line_error(capsys.readouterr().err)
        assert "read-only" in line and "nothing was changed" in line
    assert main(["sql", "SELECT count() AS n FROM tokentrail.spans", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": 4}]


def test_sql_bad_query(seeded: runtime.Tokentrail, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "SELECT nosuch FROM tokentrail.spans"]) == 1
    line = _one_line_error(capsys.readouterr().err)
    assert "nosuch" in line and "DESCRIBE tokentrail.spans" in line


# -- report ---------------------------------------------------------------------------------
def test_report_json_exact(seeded: runtime.Tokentrail, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--by", "model", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["by"] == "model"
    rows = {r["model"]: r for r in data["rows"]}
    assert [r["model"] for r in data["rows"]] == ["gpt-4o", "gpt-4o-mini", "acme-llm-7b"]
    assert rows["gpt-4o"]["calls"] == 2 and rows["gpt-4o"]["cost_usd"] == "0.003234567"
    assert rows["gpt-4o"]["input_tokens"] == 3000 and rows["gpt-4o"]["output_tokens"] == 150
    assert rows["acme-llm-7b"]["cost_usd"] is None and rows["acme-llm-7b"]["unpriced_calls"] == 1
    assert data["total"]["calls"] == 4 and data["total"]["cost_usd"] == "0.003244567"


def test_report_since_and_filters(seeded: runtime.Tokentrail, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--by", "team", "--since", "7d", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {r["team"]: r["calls"] for r in data["rows"]} == {"growth": 1, "search": 1, "platform": 1}
    assert main(["report", "--by", "model", "--team", "search", "--team", "growth", "--since", "3h", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["model"], r["calls"], r["cost_usd"]) for r in rows] == [("gpt-4o-mini", "1", "0.000010000")]


def test_report_table(seeded: runtime.Tokentrail, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--by", "model"]) == 0
    out = capsys.readouterr().out
    assert "$0.003235" in out  # 6 decimals
    assert "$0.003245" in out  # the total
    assert "unpriced" in out
    assert '[prices."<model>"]' in out  # printed verbatim, not eaten as markup


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["report", "--by", "colour"], "invalid choice"),
        (["report", "--since", "7x"], "--since"),
        (["report", "--until", "soon"], "--until"),
        (["report", "--limit", "0"], "at least 1"),
        (["frobnicate"], "invalid choice"),
        (["dashboard", "--port", "99999"], "between 1 and 65535"),
        ([], "required"),
    ],
)
def test_usage_errors_are_one_line_exit_2(tt_home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert needle in _one_line_error(captured.err)
    assert captured.out == ""


def test_config_errors_are_one_line_exit_2(tt_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TOKENTRAIL_CLICKHOUSE_URL", "mysql://db:3306")
    assert main(["report"]) == 2
    assert "TOKENTRAIL_CLICKHOUSE_URL" in _one_line_error(capsys.readouterr().err)
    monkeypatch.delenv("TOKENTRAIL_CLICKHOUSE_URL")
    (tmp_path / "tokentrail.toml").write_text('colour = "blue"\n')
    assert main(["sql", "SELECT 1"]) == 2
    assert "colour" in _one_line_error(capsys.readouterr().err)
    assert main(["--config", str(tmp_path / "missing.toml"), "report"]) == 2
    assert "missing.toml" in _one_line_error(capsys.readouterr().err)
    (tmp_path / "tokentrail.toml").write_text('[prices."m"]\ninput_per_mtok = "cheap"\noutput_per_mtok = 1\n')
    assert main(["prices", "m"]) == 2
    assert "prices.m.input_per_mtok" in _one_line_error(capsys.readouterr().err)


def test_store_lock_timeout_is_one_line(seeded: runtime.Tokentrail, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli.common, "LOCK_TIMEOUT_S", 0.3)
    path = seeded.settings.embedded_path
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another reader holds the store
        assert main(["report"]) == 1
        assert "lock" in _one_line_error(capsys.readouterr().err)
    finally:
        os.close(fd)
    assert main(["report", "--format", "json"]) == 0


# -- prices ---------------------------------------------------------------------------------
def test_prices_known_model(tt_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prices", "gpt-4o", "--format", "json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["status"] == "priced" and info["source"].startswith("genai-prices")
    assert Decimal(info["input_per_mtok"]) > 0 and Decimal(info["output_per_mtok"]) > Decimal(info["input_per_mtok"])
    assert main(["prices", "claude-sonnet-4", "--provider", "anthropic", "--at", "2025-09-01"]) == 0
    out = capsys.readouterr().out
    assert "anthropic" in out and "2025-09-01" in out and "cache write $/MTok" in out


def test_prices_override_from_toml(tt_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tokentrail.toml").write_text('[prices."acme-llm-7b"]\ninput_per_mtok = 0.2\noutput_per_mtok = 0.6\n')
    assert main(["prices", "acme-llm-7b", "--format", "json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["status"], info["source"], info["input_per_mtok"], info["output_per_mtok"]) == ("override", "override acme-llm-7b", "0.2", "0.6")
    # --config, after the command
    other = tmp_path / "elsewhere.toml"
    other.write_text('[prices."acme-llm-7b"]\ninput_per_mtok = 1\noutput_per_mtok = 2\n')
    assert main(["prices", "acme-llm-7b", "--config", str(other), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["output_per_mtok"] == "2"


def test_prices_unknown_model(tt_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prices", "acme-llm-7b"]) == 1
    captured = capsys.readouterr()
    assert "unpriced" in captured.out
    assert '[prices."acme-llm-7b"]' in _one_line_error(captured.err)
    assert main(["prices", "gpt-4o", "--at", "last tuesday"]) == 2
    assert "--at" in _one_line_error(capsys.readouterr().err)


# -- ingest ---------------------------------------------------------------------------------
def test_ingest_counts_batches_and_rows(tt: runtime.Tokentrail, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(3):
        _call(tt, "gpt-4o", "search", "0.000001000", NOW - timedelta(minutes=i), 10, 10)
        assert tt.flush()  # one batch each
    assert spool.count(tt.settings.spool_dir) == 3
    assert main(["ingest"]) == 0
    assert "ingested 3 batches" in capsys.readouterr().out.replace("\n", " ")
    assert spool.count(tt.settings.spool_dir) == 0
    assert main(["ingest"]) == 0
    assert "spool empty" in capsys.readouterr().out
    assert main(["sql", "SELECT count() AS n FROM tokentrail.spans", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": 3}]


def test_ingest_reports_rows(tt: runtime.Tokentrail, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(5):
        _call(tt, "gpt-4o", "search", None, NOW - timedelta(minutes=i), 1, 1)
    assert tt.flush()
    assert main(["ingest"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "5 spans" in out and "0 budget events" in out


# -- dashboard & budgets --------------------------------------------------------------------
def test_dashboard_runs_streamlit_with_the_flags(tt_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(cli.dashboard, "run_child", lambda cmd, env: calls.append((cmd, env)) or 0)
    cfg = tmp_path / "my.toml"
    cfg.write_text('project = "shop"\n')
    assert main(["dashboard", "--port", "8600", "--host", "0.0.0.0", "--headless", "--config", str(cfg)]) == 0
    (cmd, env), = calls
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert Path(cmd[4]).name == "app.py" and Path(cmd[4]).parent.name == "dashboard"
    assert cmd[cmd.index("--server.port") + 1] == "8600" and cmd[cmd.index("--server.address") + 1] == "0.0.0.0"
    assert cmd[cmd.index("--server.headless") + 1] == "true"
    assert env["TOKENTRAIL_CONFIG"] == str(cfg.resolve())
    assert "http://0.0.0.0:8600" in capsys.readouterr().out
    # defaults: 127.0.0.1:8501
    calls.clear()
    assert main(["dashboard"]) == 0
    cmd = calls[0][0]
    assert cmd[cmd.index("--server.port") + 1] == "8501" and cmd[cmd.index("--server.address") + 1] == "127.0.0.1"


def test_dashboard_without_streamlit(tt_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "streamlit" else real(name, *a))
    monkeypatch.setattr(cli.dashboard, "run_child", lambda *a, **k: pytest.fail("must not start"))
    assert main(["dashboard"]) == 1
    assert "pip install 'tokentrail[dashboard]'" in _one_line_error(capsys.readouterr().err)


def test_budgets_command(tt_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["budgets"]) == 0
    assert "no budgets configured" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "tokentrail.budgets.cli", None)  # an installation without it
    assert main(["budgets"]) == 1
    assert "budgets" in _one_line_error(capsys.readouterr().err)


def test_missing_optional_dependency_names_the_extra(tt_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def no_chdb(*a: Any, **k: Any) -> Any:
        raise ModuleNotFoundError("No module named 'chdb'", name="chdb")

    monkeypatch.setattr(cli.common, "open_store", no_chdb)
    assert main(["report"]) == 1
    assert "pip install 'tokentrail[embedded]'" in _one_line_error(capsys.readouterr().err)


# -- the entry point, for real --------------------------------------------------------------
def test_console_script_and_module(tt_home: Path) -> None:
    exe = Path(sys.executable).with_name("tokentrail")
    env = {**os.environ, "TOKENTRAIL_HOME": str(tt_home)}
    r = subprocess.run([str(exe), "sql", "DROP TABLE tokentrail.spans"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1 and r.stdout == ""
    assert "read-only" in _one_line_error(r.stderr)
    r = subprocess.run([sys.executable, "-m", "tokentrail", "report", "--by", "nope"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2
    assert "invalid choice" in _one_line_error(r.stderr)


def test_run_child_stops_the_server_when_the_cli_is_terminated(tmp_path: Path) -> None:
    import signal

    script = (
        "import os, sys; from tokentrail.cli.dashboard import run_child; "
        "sys.exit(run_child([sys.executable, '-c', 'import os, time; print(os.getpid(), flush=True); time.sleep(120)'], dict(os.environ)))"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        parent.send_signal(signal.SIGTERM)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(child_pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            os.kill(child_pid, signal.SIGKILL)
            pytest.fail("the child outlived the CLI")
    finally:
        if parent.poll() is None:
            parent.kill()


def test_unreachable_server_is_one_line_without_the_password(
    tt_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("TOKENTRAIL_CLICKHOUSE_URL", f"http://default:s3cret@127.0.0.1:{port}/tokentrail")
    assert main(["report"]) == 1
    line = _one_line_error(capsys.readouterr().err)
    assert f"cannot reach ClickHouse at http://127.0.0.1:{port}/tokentrail" in line
    assert "s3cret" not in line


def test_sql_json_stays_valid_for_awkward_values(tt_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    q = (
        "SELECT nan AS a, inf AS b, toDecimal128('12345678901234567890.123456789', 9) AS d, "
        "toUUID('61f0c404-5cb3-11e7-907b-a6006ad3dba0') AS u, map('k', [1, 2]) AS m, 18446744073709551615 AS big"
    )
    assert main(["sql", q, "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)  # strict JSON: no NaN literals
    assert row == {
        "a": None,
        "b": None,
        "d": "12345678901234567890.123456789",
        "u": "61f0c404-5cb3-11e7-907b-a6006ad3dba0",
        "m": {"k": [1, 2]},
        "big": 18446744073709551615,
    }
