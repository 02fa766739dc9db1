"""Two ledgers (issue 14): the price table, `prices sync`, and re-pricing in SQL on the real
embedded ClickHouse. The as-charged cost is never rewritten; the re-priced one equals what
PriceBook (and so genai-prices' calc_price) gives for the same usage, to the nano-dollar."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from clocks import FixedClock

from tokentrail.cli import main
from tokentrail.clock import now as clock_now
from tokentrail.config import resolve
from tokentrail.pricing import PriceBook
from tokentrail.pricing import ids as price_ids
from tokentrail.pricing.table import sync
from tokentrail.queries.reprice import create_view, reprice
from tokentrail.store import open_store
from tokentrail.usage import Usage

NOW = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
FEE_CASES = [
    ("gpt-5", "openai", Usage(20_000, 3_000, 8_000, 0, 1_000, service_tier="flex")),
    ("gpt-5", "openai", Usage(20_000, 3_000, 8_000, 0, 1_000, service_tier="priority")),
    ("claude-sonnet-4-5", "anthropic", Usage(8_120, 80, 5_000, 3_000, 0, cache_write_1h_tokens=2_000, web_search_requests=3)),
    ("claude-sonnet-4-5", "anthropic", Usage(250_000, 80, 5_000, 3_000, 0, service_tier="batch")),
    ("gemini-2.5-pro", "google", Usage(250_000, 1_000, 10_000)),
    ("gpt-4.1", "openai", Usage(1_200, 300, web_search_requests=2)),
    ("sonar", "perplexity", Usage(1_000, 200)),
]


def _span(i: int, model: str, provider: str, u: Usage, when: datetime, book: PriceBook, **extra: Any) -> dict[str, Any]:
    c = book.cost(u, model, provider, when)
    return {
        "timestamp": when, "trace_id": f"t{i}", "span_id": f"s{i:04d}", "name": f"chat {model}", "operation": "chat",
        "provider": provider, "request_model": model, "response_model": model, "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens, "cache_read_tokens": u.cache_read_tokens, "cache_write_tokens": u.cache_write_tokens,
        "reasoning_tokens": u.reasoning_tokens, "cache_write_1h_tokens": u.cache_write_1h_tokens,
        "web_search_requests": u.web_search_requests, "service_tier": u.service_tier, "cost_usd": c.total_usd,
        "cost_status": c.status, "price_id": c.price_id, "price_version": c.price_version, "user_id": extra.get("user", "ann"),
        "feature": extra.get("feature", "search"),
    }  # fmt: skip


def _insert(store: Any, rows: list[dict[str, Any]]) -> None:
    cols = list(rows[0])
    store.client.insert(store.table("spans"), [[r[c] for c in cols] for r in rows], column_names=cols)


def test_reprice_in_sql_equals_pricebook_for_every_fee(tt_home: Path) -> None:
    book = PriceBook()
    when = NOW - timedelta(days=2)
    rows = [_span(i, m, p, u, when, book, user=f"u{i}") for i, (m, p, u) in enumerate(FEE_CASES)]
    assert all(r["cost_status"] == "priced" for r in rows)
    with open_store(resolve()) as store:
        _insert(store, rows)
        by_user = reprice(store, book, since=NOW - timedelta(days=30), until=NOW, now=NOW, by="user")
        # same day, same prices: every span re-priced to exactly what it was charged
        assert {r.group: (r.charged_usd, r.repriced_usd, r.unpriced) for r in by_user} == {
            f"u{i}": (r["cost_usd"], r["cost_usd"], 0) for i, r in enumerate(rows)
        }
        create_view(store, book, NOW)
        view = store.rows("SELECT span_id, cost_usd, repriced_cost_usd FROM tokentrail.spans_repriced ORDER BY span_id")
        assert view == [(r["span_id"], r["cost_usd"], r["cost_usd"]) for r in rows]


def test_last_months_usage_at_todays_prices_keeps_what_was_charged(tt_home: Path) -> None:
    """o3 cost $10 / $40 per MTok until its 2025-06-10 cut to $2 / $8."""
    book = PriceBook()
    old = datetime(2025, 6, 1, 9, tzinfo=timezone.utc)
    u = Usage(1000, 100)
    rows = [_span(0, "o3", "openai", u, old, book, feature="chat"), _span(1, "o3", "openai", u, old, book, feature="chat"),
            _span(2, "nope-model", "openai", u, old, book, feature="other")]  # fmt: skip
    assert rows[0]["cost_usd"] == Decimal("0.014") and rows[0]["price_id"] == "gp/openai/o3/0/standard"
    now = datetime(2025, 7, 1, tzinfo=timezone.utc)
    with open_store(resolve()) as store:
        _insert(store, rows)
        found = {r.group: r for r in reprice(store, book, since=now - timedelta(days=30), until=now, now=now, by="model")}
        o3, nope = found["o3"], found["nope-model"]
        assert (o3.group, o3.spans, o3.charged_usd, o3.repriced_usd, o3.difference_usd) == (
            "o3", 2, Decimal("0.028"), Decimal("0.0056"), Decimal("-0.0224"),
        )  # fmt: skip
        assert (nope.group, nope.unpriced, nope.repriced_usd) == ("nope-model", 1, 0)
        (only,) = reprice(store, book, since=now - timedelta(days=30), until=now, now=now, model="nope-model", by="feature")
        assert (only.group, only.spans) == ("other", 1)
        # the as-charged ledger is untouched
        assert store.rows("SELECT span_id, cost_usd, price_id FROM tokentrail.spans ORDER BY span_id") == [
            (r["span_id"], r["cost_usd"], r["price_id"]) for r in rows
        ]


def test_reprice_cli_with_a_prices_file(tt_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], clock: FixedClock) -> None:
    book = PriceBook()
    when = clock_now() - timedelta(days=3)
    u = Usage(2_000_000, 100_000, cache_read_tokens=1_000_000)
    with open_store(resolve()) as store:
        _insert(store, [_span(0, "gpt-4o", "openai", u, when, book), _span(1, "claude-3-5-haiku-latest", "anthropic", u, when, book)])
    proposal = tmp_path / "proposal.toml"
    proposal.write_text('[prices."gpt-4o"]\ninput_per_mtok = 2\noutput_per_mtok = 8\ncache_read_per_mtok = 0.5\n')
    assert main(["reprice", "--since", "30d", "--prices", str(proposal), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    by_model = {r["group"]: r for r in out["model"]}
    # 1M uncached * $2 + 1M cached * $0.5 + 100k out * $8
    assert by_model["gpt-4o"]["repriced_usd"] == "3.300000000"
    assert by_model["gpt-4o"]["charged_usd"] == "4.750000000"  # $2.5 / $1.25 / $10 as charged
    assert by_model["claude-3-5-haiku-latest"]["unpriced"] == 1  # the file does not price it
    assert [r["group"] for r in out["user"]] == ["ann"] and [r["group"] for r in out["feature"]] == ["search"]
    assert main(["reprice", "--prices", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml" in capsys.readouterr().err


def test_prices_sync_is_offline_versioned_and_holds_overrides(tt_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tokentrail.toml").write_text(
        '[prices."llama-70b-selfhosted"]\ngpu_hour_usd = 2.5\ntokens_per_second = 1500\n'
        '[prices."claude-sonnet-4-0@batch"]\ninput_per_mtok = 1.5\noutput_per_mtok = 7.5\n'
    )
    assert main(["prices", "sync"]) == 0
    assert "rows of genai-prices" in capsys.readouterr().out
    assert main(["prices", "sync"]) == 0
    assert "up to date" in capsys.readouterr().out
    with open_store(resolve()) as store:
        n = store.rows("SELECT count() FROM tokentrail.prices WHERE source = 'genai-prices'")[0][0]
        assert n > 3000
        gpu = store.rows("SELECT provider, model, tier, source, input_mtok, conditions FROM tokentrail.prices WHERE model = 'llama-70b-selfhosted'")
        # 2.5 $/h / (3600 s * 1500 tok/s) per token = $0.462962962963 per MTok
        assert gpu == [("*", "llama-70b-selfhosted", "standard", "gpu-hour", Decimal("0.462962962963"),
                        '{"gpu_hour": {"gpu_count": "1", "gpu_hour_usd": "2.5", "tokens_per_second": "1500"}}')]  # fmt: skip
        assert store.rows("SELECT tier FROM tokentrail.prices WHERE model = 'claude-sonnet-4-0' AND source = 'override'") == [("batch",)]
        sonnet = store.rows(
            "SELECT tier, min_input_tokens, input_mtok, cache_write_1h_mtok, web_search_kcount, valid_from FROM tokentrail.prices "
            "WHERE price_id = 'gp/anthropic/claude-sonnet-4-5/2026-10-14/standard' ORDER BY min_input_tokens"
        )
        assert [r[:5] for r in sonnet] == [("standard", 0, Decimal(3), Decimal(6), Decimal(10)), ("standard", 200_001, Decimal(6), Decimal(12), Decimal(10))]
    # a new genai-prices version: its rows beside the old ones
    monkeypatch.setattr(price_ids, "genai_version", lambda: "genai-prices 9.9.9")
    import tokentrail.pricing.table as table

    monkeypatch.setattr(table, "genai_version", lambda: "genai-prices 9.9.9")
    with open_store(resolve()) as store:
        assert "genai-prices 9.9.9" in sync(store, PriceBook(), NOW)
        versions = store.rows("SELECT DISTINCT version FROM tokentrail.prices WHERE source = 'genai-prices' ORDER BY version")
        assert [v[0] for v in versions][-1] == "genai-prices 9.9.9" and len(versions) == 2


def test_prices_model_shows_tiers_fees_and_version(tt_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prices", "claude-sonnet-4-5", "--provider", "anthropic", "--at", "2026-11-01", "--format", "json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["version"].startswith("genai-prices ") and info["price_id"] == "gp/anthropic/claude-sonnet-4-5/2026-10-14/standard"
    assert (info["cache_write_per_mtok"], info["cache_write_1h_per_mtok"], info["fees"]) == ("3.75", "6", {"web_search_per_k": "10"})
    assert info["service_tiers"]["batch"]["input_per_mtok"] == "1.5" and info["service_tiers"]["batch"]["when"] == {"processing": "batch"}
    assert info["tiers"]["input_per_mtok"] == [[200000, "6"]]
    assert main(["prices", "gpt-5", "--provider", "openai", "--at", "2026-11-01"]) == 0
    text = capsys.readouterr().out
    assert "tier flex" in text and "tier priority" in text and "web searches $/1,000" in text
