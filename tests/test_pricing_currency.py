"""Amounts in a configured currency at the user's dated rates (issue 14): the store stays in
USD; the report converts each day at its own rate; a budget may be set in the currency; a day
without a rate is a one-line error, never a silent 1:1."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from clocks import FixedClock
from test_dashboard import filled, store_now  # noqa: F401 (fixtures)
from test_reprice import _insert, _span

from tokentrail.cli import main
from tokentrail.config import resolve
from tokentrail.currency import MissingRate, parse_currency
from tokentrail.errors import ConfigError
from tokentrail.pricing import PriceBook
from tokentrail.queries import Filters, spend_in_currency
from tokentrail.store import open_store
from tokentrail.usage import Usage

TOML = """[currency]
code = "EUR"
rates_file = "eur.csv"
rates = { 2026-03-17 = "0.91" }
"""


def test_rates_by_day_from_a_file_and_the_table(tmp_path: Path) -> None:
    (tmp_path / "eur.csv").write_text("date,rate\n2026-03-01,0.9\n2026-03-10,0.95\n")
    cur = parse_currency({"code": "eur", "rates_file": "eur.csv", "rates": {"2026-03-17": "0.91"}}, tmp_path)
    assert cur is not None and cur.code == "EUR"
    assert [cur.rate(date(2026, 3, d)) for d in (1, 8, 10, 16, 17, 24)] == [Decimal(x) for x in ("0.9", "0.9", "0.95", "0.95", "0.91", "0.91")]
    assert cur.from_usd(Decimal("10.000000001"), date(2026, 3, 17)) == Decimal("9.100000001")  # half-even at 1e-9
    assert cur.to_usd(Decimal("91"), datetime(2026, 3, 17, 23, tzinfo=timezone.utc)) == Decimal(100)
    with pytest.raises(MissingRate) as e:
        cur.rate(date(2026, 2, 28))
    assert str(e.value) == (
        "tokentrail: currency: no USD->EUR rate for 2026-02-28 (the first rate is dated 2026-03-01); "
        f"add a EUR rate dated 2026-02-28 or earlier to {tmp_path / 'eur.csv'} and [currency] rates"
    )
    with pytest.raises(MissingRate, match="2026-03-25 .*older than max_age_days = 7"):
        cur.rate(date(2026, 3, 25))  # the last rate is 8 days old
    for bad, field in (({"code": "euro", "rates": {"2026-01-01": 1}}, "currency.code"), ({"code": "EUR"}, "currency"),
                       ({"code": "EUR", "rates": {"2026-01-01": "-1"}}, "currency.rates.2026-01-01"),
                       ({"code": "EUR", "rates": {"2026-13-01": "1"}}, "currency.rates.2026-13-01"),
                       ({"code": "EUR", "rates": {}, "rates_file": "nope.csv"}, "currency.rates_file"),
                       ({"code": "EUR", "rate": 1}, "currency.rate")):  # fmt: skip
        with pytest.raises(ConfigError) as c:
            parse_currency(bad, tmp_path)
        assert c.value.field == field and "\n" not in str(c.value)


def test_report_in_the_configured_currency_day_by_day(tt_home: Path, tmp_path: Path, clock: FixedClock, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tokentrail.toml").write_text(TOML)
    (tmp_path / "eur.csv").write_text("2026-03-10,0.95\n")
    book = PriceBook()
    now = clock.now  # 2026-03-18 12:00 UTC
    u = Usage(1_000_000, 100_000)  # gpt-4o: $2.5 + $1 = $3.5 a call
    rows = [_span(0, "gpt-4o", "openai", u, now - timedelta(days=2), book),  # 03-16 at 0.95
            _span(1, "gpt-4o", "openai", u, now - timedelta(days=1), book),  # 03-17 at 0.91
            _span(2, "gpt-4o", "openai", u, now - timedelta(hours=1), book, user="bo")]  # 03-18 at 0.91  # fmt: skip
    assert {r["cost_usd"] for r in rows} == {Decimal("3.5")}
    with open_store(resolve()) as store:
        _insert(store, rows)
    assert main(["report", "--by", "user", "--since", "7d", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["currency"] == "EUR"
    # 3.5 x 0.95 + 3.5 x 0.91 for ann, 3.5 x 0.91 for bo; the USD columns unchanged
    assert {r["user"]: (r["cost_usd"], r["cost_eur"]) for r in out["rows"]} == {
        "ann": ("7.000000000", "6.510000000"), "bo": ("3.500000000", "3.185000000"),
    }  # fmt: skip
    assert (out["total"]["cost_usd"], out["total"]["cost_eur"]) == ("10.500000000", "9.695000000")
    assert main(["report", "--by", "user", "--since", "7d"]) == 0
    text = capsys.readouterr().out
    assert "cost EUR" in text and "€9.70" in text and "€6.51" in text
    # the store is in USD
    with open_store(resolve()) as store:
        assert store.rows("SELECT sum(cost_usd) FROM tokentrail.spans")[0][0] == Decimal("10.5")
        got = spend_in_currency(store, Filters(since=now - timedelta(days=7)), by="model")
        assert (got.code, got.by_key, got.total) == ("EUR", {"gpt-4o": Decimal("9.695")}, Decimal("9.695"))
        _insert(store, [_span(3, "gpt-4o", "openai", u, datetime(2026, 3, 5, tzinfo=timezone.utc), book)])
    # a day before the first rate: one line naming it, no 1:1
    assert main(["report", "--since", "30d"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("tokentrail: currency: no USD->EUR rate for 2026-03-05") and "\n" not in err


def test_a_budget_set_in_the_currency_is_converted_to_usd(tt_home: Path, tmp_path: Path, clock: FixedClock) -> None:
    (tmp_path / "eur.csv").write_text("2026-03-10,0.95\n")
    (tmp_path / "tokentrail.toml").write_text(
        TOML + '\n[[budgets]]\nname = "eu-team"\nlimit = 910\ncurrency = "EUR"\nperiod = "month"\n'
        '\n[[budgets]]\nname = "us-team"\nlimit_usd = 100\n'
    )
    eu, us = resolve().budgets
    # at the rate of the day the settings were resolved (03-18: 0.91 EUR per USD)
    assert (eu.limit_usd, eu.currency, eu.amount) == (Decimal(1000), "EUR", Decimal(910))
    assert (us.limit_usd, us.currency, us.amount) == (Decimal(100), "USD", None)
    (tmp_path / "tokentrail.toml").write_text('[[budgets]]\nname = "eu-team"\nlimit = 910\ncurrency = "GBP"\n')
    with pytest.raises(ConfigError) as e:
        resolve()
    assert e.value.field == "budgets[eu-team].currency" and "GBP has no exchange rates" in str(e.value)
    (tmp_path / "tokentrail.toml").write_text(TOML + '\n[[budgets]]\nname = "eu-team"\nlimit_usd = 910\ncurrency = "EUR"\n')
    with pytest.raises(ConfigError, match=r"budgets\[eu-team\].limit: is missing"):
        resolve()


@pytest.mark.parametrize("page", ["views/efficiency.py", "views/overview.py"])
def test_overview_and_efficiency_show_spend_in_the_currency(filled: object, tmp_path: Path, page: str) -> None:  # noqa: F811
    from test_dashboard import MODEL_CALLS, app, assert_clean, metrics, sql

    (tmp_path / "tokentrail.toml").write_text('[currency]\ncode = "EUR"\nmax_age_days = 100000\nrates = { 2000-01-01 = "0.5" }\n')
    at = app(range="all").switch_page(page).run()
    assert_clean(at)
    usd = sql(filled, f"SELECT sum(cost_usd) FROM tokentrail.spans WHERE {MODEL_CALLS}")[0][0]  # type: ignore[arg-type]
    assert metrics(at)["Spend in EUR"] == f"€{usd * Decimal('0.5'):,.2f}" and not at.warning
    if page != "views/efficiency.py":
        return
    (tmp_path / "tokentrail.toml").write_text('[currency]\ncode = "EUR"\nrates = { 2099-01-01 = "0.5" }\n')
    at = app(range="all").switch_page("views/efficiency.py").run()
    assert_clean(at)
    assert "Spend in EUR" not in metrics(at) and "Saved by caching" in metrics(at)
    assert [w.value for w in at.warning if "no USD->EUR rate for" in w.value and "first rate is dated 2099-01-01" in w.value]
