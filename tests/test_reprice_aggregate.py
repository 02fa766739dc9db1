"""The re-pricing report aggregates usage first (sums by group, price and long-context step,
priced once on the small side): on a mixed dataset it gives exactly, to the nano-dollar, what
pricing each span on its own gives: PriceBook's cost of each span at the new date, and the
row-level SQL (the spans_repriced view)."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from test_reprice import _insert, _span

from tokentrail.config import resolve
from tokentrail.pricing import PriceBook
from tokentrail.pricing.table import sync
from tokentrail.queries.reprice import GROUPS, create_view, reprice
from tokentrail.store import open_store
from tokentrail.usage import Usage

NOW = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
# model, provider, service tiers: long-context steps (Sonnet 4.5, Gemini 2.5 Pro), flex /
# priority, batch, one-hour cache writes, web searches, a price cut inside the window (o3)
MODELS = [
    ("claude-sonnet-4-5", "anthropic", ("", "batch")),
    ("gemini-2.5-pro", "google", ("",)),
    ("gpt-5", "openai", ("", "flex", "priority")),
    ("gpt-4.1", "openai", ("",)),
    ("o3", "openai", ("",)),
]
SIZES = (1_000, 199_999, 200_000, 200_001, 250_000)  # both sides of the 200k step


def _usage(rng: random.Random, provider: str, tier: str) -> Usage:
    inp = rng.choice(SIZES) if rng.random() < 0.4 else rng.randint(1, 30_000)
    cr = rng.randint(0, inp // 2) if rng.random() < 0.5 else 0
    cw = rng.randint(0, (inp - cr) // 2) if provider == "anthropic" and rng.random() < 0.5 else 0
    out = rng.randint(1, 5_000)
    return Usage(
        inp, out, cr, cw, rng.randint(0, out) if provider == "openai" else 0,
        cache_write_1h_tokens=rng.randint(0, cw) if cw and rng.random() < 0.5 else 0,
        web_search_requests=rng.randint(1, 4) if provider != "google" and rng.random() < 0.2 else 0, service_tier=tier,
    )  # fmt: skip


def test_aggregated_report_equals_each_span_priced_alone(tt_home: Path) -> None:
    rng = random.Random(14)
    book = PriceBook()
    then = datetime(2025, 6, 1, 9, tzinfo=timezone.utc)  # o3 before its 2025-06-10 price cut
    rows, usages = [], []
    for i in range(240):
        model, provider, tiers = MODELS[i % len(MODELS)]
        u = _usage(rng, provider, rng.choice(tiers))
        when = then + timedelta(hours=rng.randint(0, 24 * 20))
        row = _span(i, model, provider, u, when, book, user=f"u{i % 7}", feature=f"f{i % 3}")
        if (
            i % 10 == 0
        ):  # written before migration 5: no price id, matched by provider, model and tier
            row["price_id"] = row["price_version"] = ""
        rows.append(row)
        usages.append((model, provider, u))
    assert all(r["cost_status"] == "priced" for r in rows)
    assert {r["price_id"] for r in rows} >= {
        "gp/openai/o3/0/standard"
    }  # charged at the old o3 price
    now = datetime(2025, 7, 1, tzinfo=timezone.utc)
    # the independent answer: each span priced by PriceBook (genai-prices' arithmetic) at `now`
    todays = [book.cost(u, m, p, now) for m, p, u in usages]
    assert all(c.status == "priced" for c in todays)
    with open_store(resolve()) as store:
        _insert(store, rows)
        sync(store, book, now)
        create_view(store, book, now)
        view = dict(store.rows("SELECT span_id, repriced_cost_usd FROM tokentrail.spans_repriced"))
        assert view == {r["span_id"]: c.total_usd for r, c in zip(rows, todays, strict=True)}
        for by, column in (("model", "request_model"), ("user", "user_id"), ("feature", "feature")):
            want: dict[str, list[Any]] = defaultdict(lambda: [0, Decimal(0), Decimal(0)])
            for r, c in zip(rows, todays, strict=True):
                acc = want[r[column]]
                acc[0] += 1
                acc[1] += r["cost_usd"]
                acc[2] += c.total_usd
            got = reprice(store, book, since=now - timedelta(days=40), until=now, now=now, by=by)
            assert {g.group: (g.spans, g.charged_usd, g.repriced_usd, g.unpriced) for g in got} == {
                k: (n, charged, repriced, 0) for k, (n, charged, repriced) in want.items()
            }, by
    assert set(GROUPS) == {"model", "user", "feature"}


def test_what_if_another_model_in_sql_equals_pricebook(tt_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Efficiency page's what-if goes through tokentrail.prices too: on a genai-prices
    model with a long-context step, on an override, and on a model without a price."""
    from tokentrail.pricing import parse_overrides
    from tokentrail.queries import Filters, what_if

    rng = random.Random(7)
    book = PriceBook(parse_overrides({"acme-llm": {"input_per_mtok": "0.7", "output_per_mtok": 2.1, "cache_read_per_mtok": "0.07"}}))
    then = NOW - timedelta(days=3)
    rows, usages = [], []
    for i in range(60):
        model, provider, _ = MODELS[i % 4]
        u = _usage(rng, provider, "")
        u = Usage(u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens, u.reasoning_tokens)
        rows.append(_span(i, model, provider, u, then + timedelta(hours=i), book))
        usages.append((u, then + timedelta(hours=i)))
    with open_store(resolve(prices={"acme-llm": {"input_per_mtok": "0.7", "output_per_mtok": 2.1, "cache_read_per_mtok": "0.07"}})) as store:
        _insert(store, rows)
        f = Filters(since=NOW - timedelta(days=10), until=NOW)
        for model, provider in (("gemini-2.5-pro", "google"), ("acme-llm", None), ("claude-sonnet-4-5", "anthropic")):
            got = what_if(store, f, model, provider, prices=book, now=NOW)
            want = sum((book.cost(u, model, provider, when).total_usd for u, when in usages), Decimal(0))
            assert (got.calls, got.actual_usd, got.what_if_usd) == (60, sum((r["cost_usd"] for r in rows), Decimal(0)), want), model
        assert what_if(store, f, "no-such-model", "openai", prices=book, now=NOW).what_if_usd is None
        # a read-only user cannot store the prices: the same dollars from PriceBook
        sql_answer = what_if(store, f, "gemini-2.5-pro", "google", prices=book, now=NOW)

        def refused(*a: Any) -> None:
            raise PermissionError("readonly")

        monkeypatch.setattr("tokentrail.queries.reprice.ensure_prices", refused)
        assert what_if(store, f, "gemini-2.5-pro", "google", prices=book, now=NOW) == sql_answer
