"""The dashboard (Streamlit AppTest) on a real ClickHouse server: the dashboard tests' own
assertions (each figure equals SQL) against the server, and every page on a database the URL
names."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("streamlit")

import test_dashboard as dash
from clocks import DEFAULT_NOW, FixedClock, installed

import tokentrail
from tokentrail import runtime, testing
from tokentrail.dashboard import data as dash_data
from tokentrail.dashboard import fmt
from tokentrail.store import forget_schemas, open_store


@pytest.fixture
def store_now(clock: FixedClock) -> datetime:
    """As the dashboard tests' own: their figures are asked relative to it ("last 30 days")."""
    return clock.now


PAGES = ("views/overview.py", "views/breakdown.py", "views/budgets.py", "views/traces.py", "views/efficiency.py", "views/sql.py")


def _filled(url: str, tt_home: Path, store_now: datetime, monkeypatch: pytest.MonkeyPatch) -> Iterator[runtime.Tokentrail]:
    monkeypatch.setenv("TOKENTRAIL_CLICKHOUSE_URL", url)  # the dashboard resolves its settings itself
    forget_schemas()
    rt = tokentrail.configure(home=tt_home, project="test")
    dash.write_calls(rt, dash.CALLS, store_now)
    assert rt.exporter.spooled_batches == 0, "the server refused batches"
    dash_data.refresh()
    yield rt
    dash_data.refresh()
    rt.shutdown()
    testing.reset()


@pytest.fixture(scope="module")
def on_server(ch_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[runtime.Tokentrail]:
    """The dashboard tests' calls in database `tokentrail` of the server (their SQL names it),
    written once for all the checks (they only read)."""
    ch_server.client().command("DROP DATABASE IF EXISTS tokentrail SYNC")
    with installed(FixedClock(DEFAULT_NOW)) as fixed, pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("dash-server")
        mp.setenv("TOKENTRAIL_HOME", str(home / "tt-home"))
        mp.chdir(home)  # no stray tokentrail.toml
        yield from _filled(ch_server.url_for("tokentrail"), home / "tt-home", fixed.now, mp)


@pytest.mark.parametrize(
    "check",
    [
        dash.test_overview_figures_equal_sql,
        dash.test_url_filters_drive_every_figure_and_follow_the_widgets,
        dash.test_breakdown_by_any_field_equals_sql,
        dash.test_traces_page_shows_the_most_expensive_trace_and_its_tree,
        dash.test_efficiency_figures,
        dash.test_what_if_matches_per_call_pricing_across_tiers,
        dash.test_sql_page_is_read_only,
    ],
    ids=lambda f: f.__name__.removeprefix("test_"),
)
def test_dashboard_checks_on_the_server(on_server: runtime.Tokentrail, check: Any, store_now: datetime) -> None:
    dash_data.refresh()
    if "store_now" in inspect.signature(check).parameters:
        check(on_server, store_now)
    else:
        check(on_server)


def test_every_page_on_the_database_the_url_names(ch_server: Any, tt_home: Path, store_now: datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    import uuid

    db = "dash_" + uuid.uuid4().hex[:8]
    for rt in _filled(ch_server.url_for(db), tt_home, store_now, monkeypatch):
        at = dash.app(range="all").run()
        dash.assert_clean(at)
        with open_store(rt.settings) as store:
            (spend, calls) = store.rows(
                f"SELECT sum(cost_usd), count() FROM {db}.spans WHERE operation IN ('chat', 'text_completion', 'embeddings')"
            )[0]
            assert store.rollups  # the pages read the rollups on this store
        m = dash.metrics(at)
        assert (m["Spend"], m["Model calls"]) == (fmt.usd(Decimal(spend)), fmt.count(calls)) and calls == len(dash.CALLS) == 11
        for page in PAGES[1:]:
            at.switch_page(page).run()
            dash.assert_clean(at)
        # the SQL page's first example reads this database's hourly rollup, and equals the spans
        at.switch_page("views/sql.py").run()
        dash.assert_clean(at)
        example = at.text_area(key="tt_sql").value
        assert f"FROM {db}.spend_hourly" in example and "now()" in example
        # the example asks relative to the server's now(); asked at the test's fixed clock instead
        at.text_area(key="tt_sql").set_value(example.replace("now()", dash.ts(store_now)))
        dash._submit(at)
        dash.assert_clean(at)
        frame = at.dataframe[0].value
        with open_store(rt.settings) as store:
            by_model = dict(store.rows(
                f"SELECT request_model, sum(cost_usd) FROM {db}.spans WHERE operation IN ('chat', 'text_completion', 'embeddings') "
                f"AND timestamp >= toStartOfHour({dash.ts(store_now)} - INTERVAL 7 DAY) GROUP BY request_model"
            ))  # fmt: skip
        assert len(by_model) == 5  # the models of the last 7 days (the unpriced one with a NULL spend)
        assert dict(zip(frame["model"], frame["spend_usd"], strict=True)) == by_model
