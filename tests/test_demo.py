"""`tokentrail demo`: real LangChain pipelines on offline models fill the store, and the report
agrees with SQL to the cent (the acceptance check)."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tokentrail import cli, demo, runtime
from tokentrail.cli import main
from tokentrail.demo import DemoClock, run_demo
from tokentrail.demo.models import DemoChatModel, Simulator
from tokentrail.store import open_store

CENT = Decimal("0.01")


@pytest.fixture
def fresh_runtime(tt_home: Path) -> Iterator[Path]:
    yield tt_home
    inst = runtime.current_or_none()
    if inst is not None:
        inst.shutdown()
    runtime._default = None


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> Any:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_demo_fills_the_store_and_report_agrees_with_sql_to_the_cent(
    fresh_runtime: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    t0 = time.perf_counter()
    assert main(["demo", "--days", "2", "--calls", "400", "--no-dashboard"]) == 0
    elapsed = time.perf_counter() - t0
    out = " ".join(capsys.readouterr().out.split())
    said = re.search(r"([\d,]+) model calls over 2 days", out)
    assert said, out
    assert elapsed < 60

    report = _json(capsys, ["report", "--by", "model", "--format", "json"])
    sql = _json(
        capsys,
        ["sql", "SELECT request_model, sum(cost_usd) FROM tokentrail.spans GROUP BY request_model", "--format", "json"],
    )
    by_sql = {r["request_model"]: r["sum(cost_usd)"] for r in sql}
    by_report = {r["model"]: r["cost_usd"] for r in report["rows"]}
    # the acceptance: every model's spend, and the total, agree to the cent
    for model, cost in by_report.items():
        assert model in by_sql
        if cost is None:
            assert by_sql[model] is None, model  # unpriced stays unknown in both
        else:
            assert Decimal(cost).quantize(CENT) == Decimal(by_sql[model]).quantize(CENT), model
            assert Decimal(cost) == Decimal(by_sql[model]), model  # in fact exactly
    sql_total = sum(Decimal(v) for v in by_sql.values() if v is not None)
    assert Decimal(report["total"]["cost_usd"]).quantize(CENT) == sql_total.quantize(CENT)
    assert sql_total > 0
    # spend outside model calls would be counted twice by the SQL and once by the report
    assert {m for m, v in by_sql.items() if v is not None} <= set(by_report)

    # what the demo is meant to show, all present
    assert set(by_report) >= {"gpt-4o", "gpt-4o-mini", "o3-mini", "claude-sonnet-4", "claude-3-5-haiku", "gemini-2.0-flash", "acme-llm-7b"}
    assert by_report["acme-llm-7b"] is None  # a self-hosted model with no list price
    facts = _json(
        capsys,
        [
            "sql",
            """SELECT
                countIf(operation IN ('chat', 'text_completion', 'embeddings')) AS calls,
                uniqExact(provider) - 1 AS providers,
                sumIf(cache_read_tokens, provider = 'anthropic') AS anthropic_cache_reads,
                sumIf(cache_write_tokens, provider = 'anthropic') AS anthropic_cache_writes,
                sumIf(reasoning_tokens, request_model = 'o3-mini') AS reasoning,
                countIf(status = 'error') AS errors,
                countIf(operation = 'retrieval') AS retrievals,
                countIf(operation = 'execute_tool') AS tools,
                uniqExact(user_id) AS users, uniqExact(team) AS teams, uniqExact(feature) AS features,
                uniqExact(session_id) AS sessions,
                uniqExact(toDate(timestamp)) AS days,
                dateDiff('hour', min(timestamp), max(timestamp)) AS span_hours,
                max(timestamp) <= now64(6) AS not_in_future,
                countIf(time_to_first_token_ms IS NOT NULL) AS streamed
            FROM tokentrail.spans""",
            "--format",
            "json",
        ],
    )[0]
    assert 400 <= facts["calls"] <= 403  # "about N": the last request may make a few more
    assert facts["calls"] == int(said.group(1).replace(",", ""))  # what the demo said it did
    assert facts["providers"] >= 4  # openai, anthropic, gcp.gemini, ollama
    assert facts["anthropic_cache_reads"] > 0 and facts["anthropic_cache_writes"] > 0
    assert facts["reasoning"] > 0
    assert facts["errors"] > 0 and facts["retrievals"] > 0 and facts["tools"] > 0
    assert facts["users"] >= 10 and facts["teams"] >= 5 and facts["features"] >= 7 and facts["sessions"] > 5
    assert facts["days"] >= 2 and facts["span_hours"] >= 36
    assert facts["not_in_future"] in (True, 1)
    assert facts["streamed"] > 0


def test_report_table_and_sql_table_agree_to_the_cent(fresh_runtime: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--days", "1", "--calls", "120", "--no-dashboard", "--seed", "3"]) == 0
    capsys.readouterr()
    assert main(["report", "--by", "model"]) == 0
    table = capsys.readouterr().out
    rows = _json(capsys, ["sql", "SELECT request_model, sum(cost_usd) AS c FROM tokentrail.spans WHERE cost_usd IS NOT NULL GROUP BY 1", "--format", "json"])
    for r in rows:
        printed = next(line for line in table.splitlines() if f" {r['request_model']} " in line)
        dollars = [c.strip() for c in printed.split("│") if c.strip().startswith("$")][0]
        assert Decimal(dollars.lstrip("$").replace(",", "")).quantize(CENT) == Decimal(r["c"]).quantize(CENT)


def test_demo_is_deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    reports = []
    for run in ("a", "b"):
        monkeypatch.setenv("TOKENTRAIL_HOME", str(tmp_path / run))
        try:
            assert main(["demo", "--days", "2", "--calls", "80", "--no-dashboard", "--seed", "11"]) == 0
        finally:
            runtime._default = None
        reports.append(_json(capsys, ["report", "--by", "feature", "--format", "json"]))
    assert reports[0] == reports[1]
    assert reports[0]["total"]["calls"] >= 80


def test_run_demo_spreads_calls_over_the_window_and_restores_the_clock(tt: runtime.Tokentrail) -> None:
    real_clock = tt.clock
    now = datetime(2026, 5, 20, 12, 0, tzinfo=timezone.utc)
    result = run_demo(tt, days=3, calls=60, seed=5, now=now)
    assert tt.clock is real_clock
    assert result.model_calls >= 60 and result.requests > 0
    assert result.end <= now and result.start == result.end - timedelta(days=3)
    tt.flush()
    with open_store(tt.settings) as store:
        [(n, lo, hi)] = store.rows(
            "SELECT count(), min(timestamp), max(timestamp) FROM tokentrail.spans "
            "WHERE operation IN ('chat', 'text_completion', 'embeddings')"
        )
    assert n == result.model_calls  # no span lost between the pipelines and the store
    assert result.start - timedelta(minutes=11) <= lo.replace(tzinfo=timezone.utc) < result.start + timedelta(days=1)
    assert result.end - timedelta(days=1) < hi.replace(tzinfo=timezone.utc) <= result.end + timedelta(minutes=11)


def test_llamaindex_seam(tt: runtime.Tokentrail, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_run(n_calls: int, rng: random.Random, clock: DemoClock) -> int:
        seen.update(n_calls=n_calls, rng=rng, clock=clock, runtime_clock=tt.clock)
        clock.at_progress(0.5)
        return n_calls

    monkeypatch.setattr(demo, "_llamaindex_traffic", lambda: SimpleNamespace(run=fake_run))
    result = run_demo(tt, days=2, calls=100, seed=1)
    assert seen["n_calls"] == 25
    assert isinstance(seen["clock"], DemoClock) and seen["runtime_clock"] is seen["clock"]
    assert isinstance(seen["rng"], random.Random)
    assert result.llamaindex_calls == 25 and result.langchain_calls >= 75
    assert result.model_calls == result.langchain_calls + 25


def test_demo_starts_the_dashboard_unless_told_not_to(fresh_runtime: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[list[str]] = []
    monkeypatch.setattr(cli, "run_child", lambda cmd, env: started.append(cmd) or 0)
    assert main(["demo", "--days", "1", "--calls", "10", "--port", "8999", "--headless"]) == 0
    (cmd,) = started
    assert "streamlit" in cmd and cmd[cmd.index("--server.port") + 1] == "8999"


def test_clock_curve() -> None:
    start = datetime(2026, 1, 5, tzinfo=timezone.utc)  # a Monday
    clock = DemoClock(start, start + timedelta(days=14), random.Random(0))
    assert clock.quantile(0.0) == start and clock.quantile(1.0) == start + timedelta(days=14)
    times = [clock.quantile(i / 1000) for i in range(1000)]
    assert times == sorted(times)
    working = sum(1 for t in times if t.weekday() < 5 and 8 <= t.hour < 20)
    assert working / len(times) > 0.6  # busier in working hours on weekdays
    clock.at(start)
    clock.advance(1500.5)
    assert clock() == int(start.timestamp()) * 10**9 + 1_500_500_000


def test_models_report_provider_usage_shapes() -> None:
    start = datetime(2026, 1, 5, tzinfo=timezone.utc)
    sim = Simulator(rng=random.Random(0), clock=DemoClock(start, start + timedelta(days=1), random.Random(0)))
    from langchain_core.messages import HumanMessage, SystemMessage

    long_system = SystemMessage(content="policy " * 1000)
    sonnet = DemoChatModel(model="claude-sonnet-4", provider="anthropic", sim=sim, prompt_caching=True)
    first = sonnet.invoke([long_system, HumanMessage(content="hi")])
    second = sonnet.invoke([long_system, HumanMessage(content="again")])
    u1, u2 = first.usage_metadata, second.usage_metadata
    assert u1 is not None and u2 is not None
    assert u1["input_token_details"]["cache_creation"] > 0 and u1["input_token_details"]["cache_read"] == 0
    assert u2["input_token_details"]["cache_read"] == u1["input_token_details"]["cache_creation"]
    raw = second.response_metadata["usage"]
    # Anthropic's raw input_tokens exclude the cache; LangChain's include it
    assert raw["input_tokens"] + raw["cache_read_input_tokens"] + raw["cache_creation_input_tokens"] == u2["input_tokens"]

    o3 = DemoChatModel(model="o3-mini", provider="openai", sim=sim, reasoning_tokens=(100, 200))
    msg = o3.invoke("review this")
    assert msg.usage_metadata is not None
    reasoning = msg.usage_metadata["output_token_details"]["reasoning"]
    assert 100 <= reasoning <= 200 and msg.usage_metadata["output_tokens"] > reasoning
    assert msg.response_metadata["token_usage"]["completion_tokens_details"]["reasoning_tokens"] == reasoning
    assert o3._get_ls_params()["ls_provider"] == "openai" and o3._get_ls_params()["ls_model_name"] == "o3-mini"

    # streaming: the chunks' usage adds up to the whole call's
    chunks = list(sonnet.stream([long_system, HumanMessage(content="stream")]))
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    # "stream" and "again" are both 2 tokens: the same prompt size, counted once across the chunks
    assert total.usage_metadata is not None and total.usage_metadata["input_tokens"] == u2["input_tokens"]
    assert total.usage_metadata["output_tokens"] > 0
    assert sim.model_calls == 4
