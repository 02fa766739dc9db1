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
from clocks import DEFAULT_NOW, FixedClock, installed

from tokentrail import cli, demo, runtime, testing
from tokentrail.budgets import budget_status
from tokentrail.cli import main
from tokentrail.config import resolve
from tokentrail.demo import DemoClock, run_demo
from tokentrail.demo.budget_config import demo_budgets
from tokentrail.demo.models import DemoChatModel, Simulator
from tokentrail.errors import format_usd as fmt_usd
from tokentrail.store import open_store

CENT = Decimal("0.01")
pytestmark = pytest.mark.usefixtures("clock")  # the demo's days end at the fixed clock's now


@pytest.fixture
def fresh_runtime(tt_home: Path) -> Iterator[Path]:
    yield tt_home
    inst = runtime.current_or_none()
    if inst is not None:
        inst.shutdown()
    testing.reset()


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
                countIf(operation IN ('chat', 'text_completion', 'embeddings') AND error_type != 'BudgetExceeded') AS calls,
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
    # "about N": the last request may make a few more. Calls a demo budget refused before the
    # provider are spans too (error_type BudgetExceeded), not model calls the demo made
    assert 400 <= facts["calls"] <= 403
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
    events = []
    for run in ("a", "b"):
        monkeypatch.setenv("TOKENTRAIL_HOME", str(tmp_path / run))
        try:
            assert main(["demo", "--days", "2", "--calls", "80", "--no-dashboard", "--seed", "11"]) == 0
        finally:
            testing.reset()
        reports.append(_json(capsys, ["report", "--by", "feature", "--format", "json"]))
        # the demo's budgets too: the same warnings and blocks (times move with the wall clock)
        events.append(
            _json(
                capsys,
                [
                    "sql",
                    "SELECT event, budget, scope_value, threshold, model, count() AS n FROM tokentrail.budget_events "
                    "WHERE event != 'reset' GROUP BY ALL ORDER BY ALL",
                    "--format",
                    "json",
                ],
            )
        )
    assert reports[0] == reports[1]
    assert reports[0]["total"]["calls"] >= 80
    assert events[0] == events[1]


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
    started: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(cli.dashboard, "run_child", lambda cmd, env: started.append((cmd, env)) or 0)
    assert main(["demo", "--days", "1", "--calls", "10", "--port", "8999", "--headless"]) == 0
    ((cmd, env),) = started
    assert "streamlit" in cmd and cmd[cmd.index("--server.port") + 1] == "8999"
    # no tokentrail.toml of the user's: the dashboard reads the demo's budgets
    assert env["TOKENTRAIL_CONFIG"] == str((fresh_runtime / "demo.toml").resolve())


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


# -- the demo's budgets ----------------------------------------------------------------------
DEMO_BUDGETS = ["acme-monthly", "support-team", "per-user-daily", "summarize-daily"]
_MODEL_CALLS = "operation IN ('chat', 'text_completion', 'embeddings') AND cost_usd IS NOT NULL"


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """One small demo run with no tokentrail.toml of the user's: (its home, what it printed)."""
    import contextlib
    import io

    home = tmp_path_factory.mktemp("demo-budgets") / "tt-home"
    out = io.StringIO()
    with installed(FixedClock(DEFAULT_NOW)), pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOKENTRAIL_HOME", str(home))
        mp.chdir(home.parent)
        try:
            with contextlib.redirect_stdout(out):
                assert main(["demo", "--days", "2", "--calls", "300", "--no-dashboard"]) == 0
        finally:
            testing.reset()
    yield home, out.getvalue()


@pytest.fixture
def demo_config(demo_home: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TOKENTRAIL_CONFIG set as the demo says, and nothing else: demo.toml names its home."""
    config = demo_home[0] / "demo.toml"
    monkeypatch.delenv("TOKENTRAIL_HOME", raising=False)
    monkeypatch.setenv("TOKENTRAIL_CONFIG", str(config))
    monkeypatch.chdir(tmp_path)
    return config


def _ts(when: datetime) -> str:
    return f"toDateTime64('{when:%Y-%m-%d %H:%M:%S.%f}', 6, 'UTC')"


def _sql_spend(store: Any, now: datetime) -> dict[tuple[str, str], Decimal]:
    """Each demo budget's spend in its period at `now`, asked in plain SQL: {(budget, scope value)}."""
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    day_range = f"timestamp >= {_ts(day)} AND timestamp < {_ts(day + timedelta(days=1))}"

    def one(where: str) -> Decimal:
        [(spent,)] = store.rows(f"SELECT sum(cost_usd) FROM tokentrail.spans WHERE {_MODEL_CALLS} AND {where}")
        return Decimal(spent or 0)

    out = {
        ("acme-monthly", ""): one(f"timestamp >= {_ts(month)} AND timestamp < {_ts(next_month)}"),
        ("support-team", ""): one(f"team = 'support' AND timestamp >= {_ts(now - timedelta(days=30))}"),
        ("summarize-daily", ""): one(f"feature = 'summarize' AND {day_range}"),
    }
    for user, spent in store.rows(
        f"SELECT user_id, sum(cost_usd) FROM tokentrail.spans WHERE {_MODEL_CALLS} AND user_id != '' AND {day_range} GROUP BY user_id"
    ):
        out[("per-user-daily", str(user))] = Decimal(spent)
    return out


def test_demo_writes_its_budgets_and_says_how_to_see_them(demo_home: tuple[Path, str]) -> None:
    home, printed = demo_home
    config = home / "demo.toml"
    assert config.is_file()
    settings = resolve(config_file=config)
    assert [b.name for b in settings.budgets] == DEMO_BUDGETS
    assert settings.home == home.resolve()  # the file names its home: TOKENTRAIL_CONFIG alone finds the store
    text = " ".join(printed.split())
    assert f"TOKENTRAIL_CONFIG={cli.demo.shell_path(config.resolve())} tokentrail budgets" in text
    assert f"TOKENTRAIL_CONFIG={cli.demo.shell_path(config.resolve())} tokentrail dashboard" in text
    said = re.search(r"budgets: 4 demo budgets \(.*?\): (\d+) warnings, (\d+) blocks", text)
    assert said, text
    with open_store(settings) as store:
        [(warns, blocks)] = store.rows(
            "SELECT countIf(event = 'warn'), countIf(event = 'block') FROM tokentrail.budget_events"
        )
    assert (warns, blocks) == (int(said.group(1)), int(said.group(2)))


def test_budgets_command_agrees_with_sql_after_the_demo(demo_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = resolve()
    assert settings.config_file == demo_config
    now = DEFAULT_NOW  # the demo ran at the `clock` fixture's time
    with open_store(settings) as store:
        rows = budget_status(store, settings, now)
        expected = _sql_spend(store, now)
        events = store.rows(
            "SELECT event, budget, scope_value, threshold, timestamp, period_start FROM tokentrail.budget_events"
        )
    # every budget and scope value, spent exactly what SQL says (Decimal, to the nano-dollar)
    got = {(s.budget, s.scope_value): s.spent_usd for s in rows if s.scope_value != "*"}
    assert got == expected
    assert [s.budget for s in rows if s.scope_value in ("", "*")][:2] == ["acme-monthly", "support-team"]
    assert got[("acme-monthly", "")] > 0 and got[("support-team", "")] > 0
    # ... and `tokentrail budgets` prints those figures
    capsys.readouterr()
    assert main(["budgets"]) == 0
    table = capsys.readouterr().out
    for s in rows:
        line = next(
            line for line in table.splitlines() if f" {s.budget} " in line and f" {s.scope_value or '(all)'} " in line
        )
        assert f"${fmt_usd(s.spent_usd)}" in line, (s, line)
        assert f"${fmt_usd(s.limit_usd)}" in line
    # the traffic ran with the budgets: warnings fired, at the demo's shifted times
    warns = [e for e in events if e[0] == "warn"]
    assert warns
    assert {e[1] for e in warns} >= {"support-team", "per-user-daily"}
    times = [e[4].replace(tzinfo=timezone.utc) for e in warns]
    assert max(times) - min(times) > timedelta(hours=1)  # spread over the two days, not all "now"
    assert min(times) >= now - timedelta(days=2, minutes=15)
    for event, budget, _, _, at, period_start in events:
        if budget == "per-user-daily" and event == "warn":
            assert period_start == at.replace(hour=0, minute=0, second=0, microsecond=0)  # the demo's day
    assert any(e[0] == "reset" for e in events)


def test_dashboard_budgets_page_shows_the_demo_budgets(demo_config: Path) -> None:
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    from tokentrail.dashboard import APP_PATH, fmt
    from tokentrail.dashboard import data as dash_data

    dash_data.refresh()
    try:
        at = AppTest.from_file(str(APP_PATH), default_timeout=60).run()
        at.switch_page("views/budgets.py").run()
        assert not at.exception, [e.value for e in at.exception]
        assert not at.error, [e.value for e in at.error]
        settings = resolve()
        with open_store(settings) as store:
            [first, *_] = budget_status(store, settings)
        summary = at.dataframe[0].value
        assert list(dict.fromkeys(summary["budget"])) == DEMO_BUDGETS
        assert summary["spent_usd"][0] == first.spent_usd
        metrics = {m.label: m.value for m in at.metric}
        assert metrics["Spent"] == fmt.usd(first.spent_usd) and metrics["Limit"] == fmt.usd(first.limit_usd)
        events = at.dataframe[1].value
        assert "warn" in set(events["event"])
    finally:
        dash_data.refresh()


def test_demo_never_shadows_the_users_config(fresh_runtime: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    Path("tokentrail.toml").write_text('project = "mine"\n')  # the user's, without budgets
    started: list[dict[str, str]] = []
    monkeypatch.setattr(cli.dashboard, "run_child", lambda cmd, env: started.append(env) or 0)
    assert main(["demo", "--days", "1", "--calls", "10", "--headless"]) == 0
    assert not (fresh_runtime / "demo.toml").exists()
    assert "TOKENTRAIL_CONFIG" not in started[0]  # the dashboard reads ./tokentrail.toml, as the demo did
    out = " ".join(capsys.readouterr().out.split())
    assert "budgets: none in" in out and "demo.toml" not in out


def test_demo_budgets_scale_with_the_traffic() -> None:
    default = {b["name"]: b["limit_usd"] for b in demo_budgets()}
    assert default == {
        "acme-monthly": Decimal(6), "support-team": Decimal(3), "per-user-daily": Decimal("0.10"), "summarize-daily": Decimal("0.035"),
    }  # fmt: skip
    # a tenth of the calls over the same days: a tenth of every limit
    small = {b["name"]: b["limit_usd"] for b in demo_budgets(days=14, calls=150)}
    assert small == {k: v / 10 for k, v in default.items()}
    # the same calls squeezed into 2 days: daily limits 7x, the others unchanged
    dense = {b["name"]: b["limit_usd"] for b in demo_budgets(days=2, calls=1500)}
    assert dense["per-user-daily"] == Decimal("0.70") and dense["acme-monthly"] == Decimal(6)


def test_summarize_falls_back_to_gemini_when_a_budget_refuses_haiku(tt_home: Path) -> None:
    from tokentrail import Budget, configure
    from tokentrail.demo import langchain_traffic

    rt = configure(
        home=tt_home,
        budgets=[Budget(name="summaries", limit_usd="0.02", period="day", scope={"feature": "summarize"})],
    )
    try:
        now = DEFAULT_NOW
        clock = DemoClock(now - timedelta(hours=2), now - timedelta(hours=1), random.Random(0))
        rt.clock = clock
        sim = Simulator(rng=random.Random(0), clock=clock)
        pipelines = langchain_traffic.Pipelines(sim)
        rng = random.Random(3)
        for _ in range(4):
            clock.advance(60_000)
            langchain_traffic._run_request(pipelines, "summarize", rng, clock)  # never raises: gemini answers
        rt.flush()
        with open_store(rt.settings) as store:
            rows = store.rows(
                "SELECT request_model, status, error_type FROM tokentrail.spans WHERE operation = 'chat' ORDER BY timestamp, name"
            )
            [(blocks,)] = store.rows("SELECT count() FROM tokentrail.budget_events WHERE event = 'block'")
    finally:
        rt.shutdown()
        testing.reset()
    refused = [r for r in rows if r[2] == "BudgetExceeded"]
    assert refused and {r[0] for r in refused} == {"claude-3-5-haiku"} and blocks == len(refused)
    assert sum(1 for r in rows if r[0] == "gemini-2.0-flash" and r[1] == "ok") >= len(refused)


def test_a_second_demo_in_the_same_home_says_its_budgets_count_the_first(
    fresh_runtime: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outs = []
    for _ in range(2):
        try:
            assert main(["demo", "--days", "1", "--calls", "20", "--no-dashboard"]) == 0
        finally:
            testing.reset()
        outs.append(" ".join(capsys.readouterr().out.split()))
    assert "already held" not in outs[0]
    assert "note: before this run the store already held" in outs[1] and "TOKENTRAIL_HOME=" in outs[1]
