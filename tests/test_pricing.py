"""Pricing: genai-prices at the call's time, overrides, Decimal money, config errors."""

from __future__ import annotations

import socket
from datetime import datetime, timezone
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import pytest
from genai_prices import Usage as GPUsage
from genai_prices import calc_price

from tokentrail import semconv as sc
from tokentrail.errors import ConfigError
from tokentrail.pricing import Cost, PriceBook, PriceOverride, genai_usage, parse_overrides
from tokentrail.providers import genai_prices_provider_id, infer_provider
from tokentrail.usage import Usage

NOW = datetime(2025, 9, 1, 12, 0, tzinfo=timezone.utc)
Q = Decimal("0.000000001")


def expected(u: Usage, model: str, provider_id: str | None, when: datetime = NOW) -> Cost:
    """What genai-prices itself says, quantised like the store column."""
    calc = calc_price(genai_usage(u), model_ref=model, provider_id=provider_id, genai_request_timestamp=when)
    return Cost(
        calc.input_price.quantize(Q),
        calc.output_price.quantize(Q),
        calc.total_price.quantize(Q),
        sc.COST_PRICED,
        f"genai-prices {calc.provider.id}/{calc.model.id}",
    )


# -- genai-prices ----------------------------------------------------------------------------


def test_gpt_4o_cached_input_known_value() -> None:
    u = Usage(input_tokens=1000, output_tokens=100, cache_read_tokens=500)
    cost = PriceBook().cost(u, "gpt-4o", "openai", NOW)
    assert cost.total_usd == Decimal("0.002875")
    assert cost.input_usd == Decimal("0.001875") and cost.output_usd == Decimal("0.001")
    assert cost.status == sc.COST_PRICED
    assert cost.source == "genai-prices openai/gpt-4o"
    # the same as calc_price with the four fields the brief names
    calc = calc_price(
        GPUsage(input_tokens=1000, cache_read_tokens=500, cache_write_tokens=0, output_tokens=100),
        model_ref="gpt-4o",
        provider_id="openai",
        genai_request_timestamp=NOW,
    )
    assert cost.total_usd == calc.total_price
    assert cost == expected(u, "gpt-4o", "openai")


@pytest.mark.parametrize(
    ("usage", "model", "otel_provider", "genai_provider"),
    [
        (Usage(188136, 412, cache_read_tokens=188086), "claude-sonnet-4-5", "anthropic", "anthropic"),
        (Usage(188107, 393, cache_write_tokens=188086), "claude-3-5-haiku-latest", "anthropic", "anthropic"),
        (Usage(250_000, 2_000, cache_read_tokens=100_000), "gemini-2.5-pro", "gcp.gemini", "google"),  # above the 200k tier
        (Usage(12000, 1650, cache_read_tokens=8000, reasoning_tokens=1200), "gemini-2.5-flash", "gcp.vertex_ai", "google"),
        (Usage(3030, 250, cache_read_tokens=3000), "anthropic.claude-3-5-sonnet-20240620-v1:0", "aws.bedrock", "aws"),
        (Usage(2006, 300, cache_read_tokens=1920, reasoning_tokens=192), "o3-mini", "openai", "openai"),
        (Usage(2006, 300), "gpt-4o", "azure.ai.openai", "azure"),
        (Usage(10120, 4308, cache_read_tokens=128, reasoning_tokens=2809), "grok-3-mini", "x_ai", "x-ai"),
        (Usage(1000, 100), "gpt-4o-mini", None, None),  # provider found from the model name
        (Usage(1000, 100), "gpt-4o-mini", "unknown", None),
    ],
)
def test_equals_calc_price(usage: Usage, model: str, otel_provider: str | None, genai_provider: str | None) -> None:
    cost = PriceBook().cost(usage, model, otel_provider, NOW)
    assert cost == expected(usage, model, genai_provider)
    assert cost.total_usd is not None and cost.total_usd > 0


def test_equals_calc_price_for_every_model_in_the_data() -> None:
    """The cached fast path reproduces calc_price for every model genai-prices knows."""
    from genai_prices.data import providers

    book = PriceBook()
    usages = [
        Usage(1234, 567),
        Usage(250_000, 3_000, cache_read_tokens=120_000, cache_write_tokens=30_000, reasoning_tokens=1_000),
    ]
    checked = 0
    for when in (datetime(2024, 6, 1, 3, tzinfo=timezone.utc), datetime(2026, 6, 1, 18, tzinfo=timezone.utc)):
        for provider in providers:
            for model in provider.models:
                for u in usages:
                    got = book.cost(u, model.id, provider.id, when)
                    try:
                        want = expected(u, model.id, provider.id, when)
                    except LookupError:
                        # an id its own provider does not match: priced only where the
                        # model name points (deepseek-* at deepseek), else unpriced
                        if got.status == sc.COST_PRICED:
                            alt = genai_prices_provider_id(infer_provider(model.id))
                            assert got == expected(u, model.id, alt, when)
                        else:
                            assert got.status == sc.COST_UNPRICED
                        continue
                    assert (got.input_usd, got.output_usd, got.total_usd) == (
                        want.input_usd,
                        want.output_usd,
                        want.total_usd,
                    ), (provider.id, model.id, u, when)
                    checked += 1
    assert checked > 4000


def test_old_call_gets_the_old_price() -> None:
    """openai o3 was $10 / $40 per MTok until its 2025-06-10 cut to $2 / $8."""
    u = Usage(1000, 100)
    book = PriceBook()
    before = book.cost(u, "o3", "openai", datetime(2025, 6, 9, 23, 59, tzinfo=timezone.utc))
    after = book.cost(u, "o3", "openai", datetime(2025, 6, 10, 0, 1, tzinfo=timezone.utc))
    assert before.total_usd == Decimal("0.014")  # 1000 * 10 / 1e6 + 100 * 40 / 1e6
    assert after.total_usd == Decimal("0.0028")  # 1000 * 2 / 1e6 + 100 * 8 / 1e6
    assert before == expected(u, "o3", "openai", datetime(2025, 6, 9, tzinfo=timezone.utc))


def test_time_of_day_prices_are_not_cached_per_day() -> None:
    """deepseek-chat has off-peak prices (a daily window), so two calls of one day can differ."""
    u = Usage(1000, 100)
    book = PriceBook()
    peak = datetime(2025, 7, 1, 3, 0, tzinfo=timezone.utc)
    off_peak = datetime(2025, 7, 1, 17, 0, tzinfo=timezone.utc)
    a = book.cost(u, "deepseek-chat", "deepseek", peak)
    b = book.cost(u, "deepseek-chat", "deepseek", off_peak)
    assert a == expected(u, "deepseek-chat", "deepseek", peak)
    assert b == expected(u, "deepseek-chat", "deepseek", off_peak)
    assert a.total_usd != b.total_usd


def test_naive_timestamp_is_utc() -> None:
    book = PriceBook()
    naive = book.cost(Usage(1000, 100), "o3", "openai", datetime(2025, 6, 9, 23, 59))
    assert naive.total_usd == Decimal("0.014")


def test_unknown_model_is_unpriced_never_zero() -> None:
    cost = PriceBook().cost(Usage(1000, 100), "my-private-model-v7", None, NOW)
    assert cost == Cost(None, None, None, sc.COST_UNPRICED)
    known_provider = PriceBook().cost(Usage(1000, 100), "not-a-real-model", "openai", NOW)
    assert known_provider.status == sc.COST_UNPRICED and known_provider.total_usd is None
    assert PriceBook().cost(Usage(1000, 100), None, "openai", NOW).status == sc.COST_UNPRICED


def test_proxy_reporting_openai_for_a_claude_model() -> None:
    # ChatOpenAI against a LiteLLM proxy: provider "openai", model named by Anthropic
    u = Usage(1000, 100)
    cost = PriceBook().cost(u, "claude-3-5-haiku-latest", "openai", NOW)
    assert cost == expected(u, "claude-3-5-haiku-latest", "anthropic")
    # a name that names no provider is not guessed
    assert PriceBook().cost(u, "llama-3.3-70b-versatile", "openai", NOW).status == sc.COST_UNPRICED


def test_self_hosted_provider_is_not_priced_from_a_cloud_list() -> None:
    cost = PriceBook().cost(Usage(1000, 100), "llama-3.3-70b-versatile", "ollama", NOW)
    assert cost.status == sc.COST_UNPRICED and cost.total_usd is None


def test_no_usage_and_zero_usage() -> None:
    book = PriceBook()
    assert book.cost(None, "gpt-4o", "openai", NOW) == Cost(None, None, None, sc.COST_NO_USAGE)
    # a cache hit: usage exists, zero tokens, a known model -> a real $0
    zero = book.cost(Usage(), "gpt-4o", "openai", NOW)
    assert zero.status == sc.COST_PRICED
    assert zero.total_usd == Decimal(0) and zero.input_usd == Decimal(0)
    # ...but an unknown model stays unpriced even at zero tokens
    assert book.cost(Usage(), "my-private-model", None, NOW).status == sc.COST_UNPRICED


def test_money_is_decimal_at_nine_places_whatever_the_app_context() -> None:
    with localcontext() as ctx:
        ctx.prec = 3
        cost = PriceBook().cost(Usage(123_457, 9_876, cache_read_tokens=7), "gpt-4o", "openai", NOW)
    assert cost == expected(Usage(123_457, 9_876, cache_read_tokens=7), "gpt-4o", "openai")
    for value in (cost.input_usd, cost.output_usd, cost.total_usd):
        assert isinstance(value, Decimal) and value.as_tuple().exponent == -9


def test_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("pricing opened a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    cost = PriceBook().cost(Usage(10, 10), "claude-3-5-haiku-latest", "anthropic", NOW)
    assert cost.status == sc.COST_PRICED


def test_describe() -> None:
    d = PriceBook().describe("gpt-4o", "openai", NOW)
    assert d["status"] == sc.COST_PRICED
    assert (d["input_per_mtok"], d["output_per_mtok"], d["cache_read_per_mtok"]) == (
        Decimal("2.5"),
        Decimal("10"),
        Decimal("1.25"),
    )
    assert d["cache_write_per_mtok"] == Decimal("2.5")  # no cache-write price: billed as input
    assert d["matched_model"] == "gpt-4o" and d["matched_provider"] == "openai"
    assert d["source"].startswith("genai-prices ") and d["source"].endswith("openai/gpt-4o")
    tiered = PriceBook().describe("gemini-2.5-pro", "gcp.gemini", NOW)
    assert tiered["tiers"]["input_per_mtok"][0][0] == 200_000
    old = PriceBook().describe("o3", None, datetime(2025, 1, 1, tzinfo=timezone.utc))
    assert old["input_per_mtok"] == Decimal("10")
    assert PriceBook().describe("nope-model")["status"] == sc.COST_UNPRICED


# -- overrides -------------------------------------------------------------------------------


def test_override_wins_with_exact_decimals() -> None:
    overrides = parse_overrides(
        {
            "my-ft-model": {"input_per_mtok": 3, "output_per_mtok": 15, "cache_read_per_mtok": "0.3"},
            "gpt-4o": {"input_per_mtok": 1, "output_per_mtok": 2},
        }
    )
    book = PriceBook(overrides)
    u = Usage(10_000, 2_000, cache_read_tokens=4_000, cache_write_tokens=1_000)
    cost = book.cost(u, "my-ft-model", "openai", NOW)
    # (10000 - 4000 - 1000) * 3 + 4000 * 0.3 + 1000 * 3 (cache write defaults to input) = 19200
    assert cost == Cost(
        Decimal("0.019200000"), Decimal("0.030000000"), Decimal("0.049200000"), sc.COST_OVERRIDE, "override my-ft-model"
    )
    # an override beats genai-prices for a listed model, and matches case-insensitively
    assert book.cost(Usage(1_000_000, 0), "GPT-4o", "openai", NOW).total_usd == Decimal("1")
    assert book.describe("my-ft-model")["cache_read_per_mtok"] == Decimal("0.3")


def test_float_prices_become_exact_decimals() -> None:
    ov = parse_overrides({"m": {"input_per_mtok": 0.1, "output_per_mtok": 0.2}})["m"]
    assert ov.input_per_mtok == Decimal("0.1") and ov.output_per_mtok == Decimal("0.2")
    cost = PriceBook({"m": ov}).cost(Usage(3_000_000, 0), "m", None, NOW)
    assert cost.total_usd == Decimal("0.3")  # not 0.30000000000000004


def test_gpu_hour_override() -> None:
    overrides = parse_overrides({"llama-70b-selfhosted": {"gpu_hour_usd": 2.5, "tokens_per_second": 1500}})
    ov = overrides["llama-70b-selfhosted"]
    per_mtok = Decimal("2.5") * 1_000_000 / (3600 * Decimal(1500))  # $0.4629... per MTok
    assert ov.input_per_mtok == ov.output_per_mtok == per_mtok
    cost = PriceBook(overrides).cost(Usage(1000, 500), "llama-70b-selfhosted", "ollama", NOW)
    # 1000 and 500 tokens at 2.5 / (3600 * 1500) dollars each
    assert cost == Cost(
        Decimal("0.000462963"),
        Decimal("0.000231481"),
        Decimal("0.000694444"),
        sc.COST_OVERRIDE,
        "override llama-70b-selfhosted",
    )


def test_gpu_hour_with_prefill_rate_and_several_gpus() -> None:
    ov = PriceOverride.from_gpu_hour("4", 1000, input_tokens_per_second=10_000, gpu_count=2)
    assert ov.output_per_mtok == Decimal(8) * 1_000_000 / 3_600_000
    assert ov.input_per_mtok == Decimal(8) * 1_000_000 / 36_000_000


def test_overrides_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "tokentrail.toml"
    path.write_text(
        'project = "shop"\n'
        '[prices."llama-3.1-70b"]\ninput_per_mtok = 0.6\noutput_per_mtok = 0.8\n'
        '[prices.my-gpu]\ngpu_hour_usd = 2.5\ntokens_per_second = 1500\n'
    )
    overrides = parse_overrides(path)
    assert overrides["llama-3.1-70b"] == PriceOverride(Decimal("0.6"), Decimal("0.8"))
    assert overrides["my-gpu"].input_per_mtok > 0
    assert parse_overrides(str(path)) == overrides
    no_prices = tmp_path / "empty.toml"
    no_prices.write_text('project = "x"\n')
    assert parse_overrides(no_prices) == {}
    assert parse_overrides(None) == {}


@pytest.mark.parametrize(
    ("value", "field", "fragment"),
    [
        ({"my-model": {"input_per_mtok": -1, "output_per_mtok": 1}}, "prices.my-model.input_per_mtok", "non-negative"),
        ({"my-model": {"input_per_mtok": 1, "output_per_mtok": "cheap"}}, "prices.my-model.output_per_mtok", "'cheap'"),
        ({"my-model": {"input_per_mtok": True, "output_per_mtok": 1}}, "prices.my-model.input_per_mtok", "True"),
        ({"my-model": {"input_per_mtok": float("nan"), "output_per_mtok": 1}}, "prices.my-model.input_per_mtok", "nan"),
        ({"my-model": {"input_per_mtok": 1, "output_per_mtok": 1, "inptu": 2}}, "prices.my-model.inptu", "unknown key"),
        ({"my-model": {"input_per_mtok": 1}}, "prices.my-model.output_per_mtok", "missing"),
        ({"m": {"gpu_hour_usd": 2, "tokens_per_second": 0}}, "prices.m.tokens_per_second", "positive"),
        ({"m": {"gpu_hour_usd": 2}}, "prices.m.tokens_per_second", "missing"),
        ({"m": {"gpu_hour_usd": 2, "tokens_per_second": 9, "input_per_mtok": 1}}, "prices.m.gpu_hour_usd", "combined"),
        ({"llama-3.1:8b": {"input_per_mtok": -2, "output_per_mtok": 1}}, 'prices."llama-3.1:8b".input_per_mtok', "non-negative"),
        ({"m": 3}, "prices.m", "table"),
        (42, "prices", "mapping"),
    ],
)
def test_bad_overrides_name_the_field(value: Any, field: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_overrides(value)
    assert err.value.field == field
    message = str(err.value)
    assert "\n" not in message and field in message and fragment in message


def test_bad_toml_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        parse_overrides(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[prices.x\ninput_per_mtok = 1\n")
    with pytest.raises(ConfigError) as err:
        parse_overrides(broken)
    assert "not valid TOML" in str(err.value) and "\n" not in str(err.value)
    bad_value = tmp_path / "bad.toml"
    bad_value.write_text('[prices."ft:gpt-4o:acme"]\ninput_per_mtok = -3\noutput_per_mtok = 1\n')
    with pytest.raises(ConfigError) as err:
        parse_overrides(bad_value)
    assert err.value.field == 'prices."ft:gpt-4o:acme".input_per_mtok'


def test_price_override_coerces_code_values() -> None:
    ov = PriceOverride(input_per_mtok=3, output_per_mtok="15")  # type: ignore[arg-type]
    assert ov.input_per_mtok == Decimal(3) and ov.output_per_mtok == Decimal(15)
    with pytest.raises(ConfigError):
        PriceOverride(input_per_mtok=Decimal(-1), output_per_mtok=Decimal(1))
