"""Every fee priced as the provider bills it (issue 14): one-hour cache writes, web searches,
service tiers (OpenAI flex / priority, Anthropic batch), long-context tiers, per-request fees.

Real provider clients (langchain-openai, langchain-anthropic, llama-index-llms-openai) against
loopback servers answering with the providers' response shapes; every figure equals
genai-prices' own calc_price on the same usage, to the nano-dollar."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from genai_prices import Usage as GPUsage
from genai_prices import calc_price
from langchain_anthropic import ChatAnthropic
from langchain_openai import ChatOpenAI
from mock_providers import (
    CREATED,
    LoopbackServer,
    Reply,
    anthropic_message,
    anthropic_stream_events,
    openai_chat_completion,
)

import tokentrail
from tokentrail import semconv as sc
from tokentrail.pricing import PriceBook
from tokentrail.usage import Usage, from_mapping

_Q = Decimal("0.000000001")


def _expected(model: str, provider: str, when: datetime, ctx: dict[str, str] | None = None, **usage: int) -> tuple[Decimal, Decimal, Decimal]:
    c = calc_price(GPUsage(**usage), model_ref=model, provider_id=provider, genai_request_timestamp=when, price_context=ctx)
    return c.input_price.quantize(_Q), c.output_price.quantize(_Q), c.total_price.quantize(_Q)


def _charged(span: Any) -> tuple[Decimal, Decimal, Decimal]:
    a = span.attributes
    return Decimal(a[sc.COST_INPUT_USD]), Decimal(a[sc.COST_OUTPUT_USD]), Decimal(a[sc.COST_USD])


def _when(span: Any) -> datetime:
    return datetime.fromtimestamp(span.start_time / 1e9, tz=timezone.utc)


def _CB() -> Any:
    return {"callbacks": [tokentrail.langchain_handler()]}


def _model_spans(exporter: Any) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if sc.COST_STATUS in (s.attributes or {})]


# -- Anthropic: one-hour cache writes, web searches, batch -----------------------------------

def _anthropic_body(model: str, *, service_tier: str = "standard") -> dict[str, Any]:
    body = anthropic_message(model=model, input_tokens=120, output_tokens=80)
    body["usage"] = {
        "input_tokens": 120,
        "cache_creation_input_tokens": 3000,
        "cache_read_input_tokens": 5000,
        "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
        "output_tokens": 80,
        "server_tool_use": {"web_search_requests": 3},
        "service_tier": service_tier,
    }
    return body


ANTHROPIC_USAGE = dict(
    input_tokens=8120, cache_read_tokens=5000, cache_write_tokens=3000, cache_write_1h_tokens=2000, output_tokens=80, web_searches=3
)


def test_anthropic_one_hour_cache_writes_and_web_searches(mem: Any) -> None:
    _, exporter = mem
    model = "claude-sonnet-4-5-20250929"
    with LoopbackServer() as srv:
        srv.push(Reply(body=_anthropic_body(model)))
        ChatAnthropic(model=model, base_url=srv.url, api_key="sk-ant-test", max_retries=0).invoke("hi", config=_CB())
    (span,) = _model_spans(exporter)
    a = span.attributes
    assert (a[sc.GEN_AI_USAGE_INPUT_TOKENS], a[sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS]) == (8120, 3000)
    assert (a[sc.USAGE_CACHE_WRITE_1H_TOKENS], a[sc.USAGE_WEB_SEARCH_REQUESTS]) == (2000, 3)
    want = _expected(model, "anthropic", _when(span), **ANTHROPIC_USAGE)
    assert _charged(span) == want
    # $3/M in, $0.30/M read, $3.75/M 5-minute write, $6/M 1-hour write, $15/M out, $10 per 1,000 searches
    assert want[2] == Decimal("0.000360") + Decimal("0.0015") + Decimal("0.00375") + Decimal("0.012") + Decimal("0.0012") + Decimal("0.03")
    assert Decimal(a[sc.COST_FEES_USD]) == Decimal("0.030000000")
    # priced at the five-minute rate, as before, the one-hour writes would have cost $0.0045 less
    no_split = _expected(model, "anthropic", _when(span), **{k: v for k, v in ANTHROPIC_USAGE.items() if k != "cache_write_1h_tokens"})
    assert want[2] - no_split[2] == Decimal("0.0045")


def test_anthropic_stream_one_hour_writes_and_searches(tt: Any, read_spans: Any) -> None:
    """Streamed through LlamaIndex, which hands tokentrail the raw stream events it yields:
    message_delta carries the server tool use. langchain-anthropic's stream chunks drop both
    the searches and the TTL split (see the README)."""
    from llama_index.core.base.llms.types import ChatMessage
    from llamaindex_mocks import Anthropic

    model = "claude-sonnet-4-5-20250929"
    events = anthropic_stream_events(model=model, input_tokens=120, output_tokens=80)
    start = events[0][1]["message"]["usage"]
    start.update(_anthropic_body(model)["usage"], output_tokens=1)
    start.pop("server_tool_use")
    delta = events[-2][1]["usage"]
    delta.update(cache_creation_input_tokens=3000, cache_read_input_tokens=5000, server_tool_use={"web_search_requests": 3})
    handle = tokentrail.instrument_llamaindex()
    try:
        with LoopbackServer() as srv:
            srv.push(Reply(events=events))
            llm = Anthropic(model=model, base_url=srv.url)
            assert "".join(c.delta or "" for c in llm.stream_chat([ChatMessage(role="user", content="hi")])) == "Hello! How can I help?"
    finally:
        handle.uninstrument()
    (row,) = read_spans()
    # the integration yields message_delta (searches) but not message_start (the TTL split):
    # the writes are billed at the five-minute rate, as the usage tokentrail sees says
    assert (row["input_tokens"], row["cache_write_tokens"], row["cache_write_1h_tokens"], row["web_search_requests"]) == (8120, 3000, 0, 3)
    seen = {k: v for k, v in ANTHROPIC_USAGE.items() if k != "cache_write_1h_tokens"}
    want = _expected(model, "anthropic", row["timestamp"], **seen)
    assert (row["input_cost_usd"], row["output_cost_usd"], row["cost_usd"]) == want


def test_anthropic_batch_tier_is_half_price(mem: Any) -> None:
    _, exporter = mem
    model = "claude-sonnet-4-5-20250929"
    with LoopbackServer() as srv:
        srv.push(Reply(body=_anthropic_body(model, service_tier="batch")))
        ChatAnthropic(model=model, base_url=srv.url, api_key="sk-ant-test", max_retries=0).invoke("hi", config=_CB())
    (span,) = _model_spans(exporter)
    assert span.attributes[sc.SERVICE_TIER] == "batch"
    when = _when(span)
    batch = _expected(model, "anthropic", when, {"processing": "batch"}, **ANTHROPIC_USAGE)
    standard = _expected(model, "anthropic", when, **ANTHROPIC_USAGE)
    assert _charged(span) == batch and batch[0] * 2 == standard[0]
    assert span.attributes[sc.PRICE_ID].endswith("/batch")


# -- OpenAI: flex and priority, web searches in responses --------------------------------------

@pytest.mark.parametrize("tier", ["flex", "priority"])
def test_openai_chat_service_tier(mem: Any, tier: str) -> None:
    _, exporter = mem
    body = openai_chat_completion(model="gpt-5-2025-08-07", prompt_tokens=20_000, cached_tokens=8_000, completion_tokens=3_000, reasoning_tokens=1_000)
    body["service_tier"] = tier
    with LoopbackServer() as srv:
        srv.push(Reply(body=body))
        llm = ChatOpenAI(model="gpt-5", base_url=srv.url + "/v1", api_key="sk-test", max_retries=0, service_tier=tier)
        llm.invoke("hi", config=_CB())
        assert srv.requests[0].json["service_tier"] == tier
    (span,) = _model_spans(exporter)
    usage = dict(input_tokens=20_000, cache_read_tokens=8_000, output_tokens=3_000, output_reasoning_tokens=1_000)
    when = _when(span)
    want = _expected("gpt-5", "openai", when, {"service_tier": tier}, **usage)
    assert _charged(span) == want
    assert want != _expected("gpt-5", "openai", when, **usage)  # the tier changes the bill
    assert span.attributes[sc.SERVICE_TIER] == tier


def _responses_body(model: str) -> dict[str, Any]:
    return {
        "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
        "object": "response",
        "created_at": CREATED,
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": [
            {"type": "web_search_call", "id": "ws_67ccd2bf1", "status": "completed", "action": {"type": "search", "query": "tokentrail"}},
            {"type": "web_search_call", "id": "ws_67ccd2bf2", "status": "completed", "action": {"type": "search", "query": "genai-prices"}},
            {
                "type": "message",
                "id": "msg_67ccd2bf17f0",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Found it.", "annotations": []}],
            },
        ],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [{"type": "web_search", "search_context_size": "medium"}],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": {
            "input_tokens": 1200,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 300,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 1500,
        },
        "user": None,
        "metadata": {},
    }


def test_openai_responses_web_searches(mem: Any) -> None:
    _, exporter = mem
    with LoopbackServer() as srv:
        srv.push(Reply(body=_responses_body("gpt-4.1-2025-04-14")))
        llm = ChatOpenAI(model="gpt-4.1", base_url=srv.url + "/v1", api_key="sk-test", max_retries=0, use_responses_api=True)
        llm.invoke("find tokentrail", tools=[{"type": "web_search"}], config=_CB())
    (span,) = _model_spans(exporter)
    assert span.attributes[sc.USAGE_WEB_SEARCH_REQUESTS] == 2
    want = _expected("gpt-4.1", "openai", _when(span), input_tokens=1200, output_tokens=300, web_searches=2)
    assert _charged(span) == want
    assert Decimal(span.attributes[sc.COST_FEES_USD]) == want[2] - want[0] - want[1] > 0


def test_llamaindex_openai_flex(tt: Any, read_spans: Any) -> None:
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.openai import OpenAI

    body = openai_chat_completion(model="gpt-5-2025-08-07", prompt_tokens=4_000, completion_tokens=500)
    body["service_tier"] = "flex"
    handle = tokentrail.instrument_llamaindex()
    try:
        with LoopbackServer() as srv:
            srv.push(Reply(body=body))
            OpenAI(model="gpt-5", api_key="test", api_base=srv.url + "/v1", max_retries=0).chat([ChatMessage(role="user", content="hi")])
    finally:
        handle.uninstrument()
    (row,) = [r for r in read_spans() if r["cost_status"] == "priced"]
    want = _expected("gpt-5", "openai", row["timestamp"], {"service_tier": "flex"}, input_tokens=4_000, output_tokens=500)
    assert (row["input_cost_usd"], row["output_cost_usd"], row["cost_usd"]) == want


# -- the plan equals calc_price for every model, in every tier, with every fee ----------------

def test_every_model_every_tier_with_fees_equals_calc_price() -> None:
    from genai_prices.data import providers

    from tokentrail.pricing.ids import tier_of

    book = PriceBook()
    when = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    checked = 0
    for provider in providers:
        for model in provider.models:
            tiers = {"", *(tier_of(v.when) for v in model.price_variants or () if len(v.when) == 1)}
            for tier in tiers:
                if tier and tier not in ("batch", "flex", "priority"):
                    continue
                u = Usage(260_000, 3_000, 100_000, 40_000, 500, cache_write_1h_tokens=30_000, web_search_requests=4, service_tier=tier)
                ctx = None if not tier else {"processing": "batch"} if tier == "batch" else {"service_tier": tier}
                try:
                    want = _expected(
                        model.id, provider.id, when, ctx, input_tokens=260_000, output_tokens=3_000, cache_read_tokens=100_000,
                        cache_write_tokens=40_000, cache_write_1h_tokens=30_000, output_reasoning_tokens=500, web_searches=4,
                    )  # fmt: skip
                except LookupError:
                    continue
                got = book.cost(u, model.id, provider.id, when)
                if got.status != sc.COST_PRICED:
                    continue  # an id its own provider does not match (test_pricing covers those)
                assert (got.input_usd, got.output_usd, got.total_usd) == want, (provider.id, model.id, tier)
                checked += 1
    assert checked > 1500


def test_long_context_tier_and_per_request_fee() -> None:
    book = PriceBook()
    when = datetime(2026, 6, 1, tzinfo=timezone.utc)
    long = book.cost(Usage(250_000, 1_000), "gemini-2.5-pro", "gcp.gemini", when)
    assert (long.input_usd, long.output_usd, long.total_usd) == _expected("gemini-2.5-pro", "google", when, input_tokens=250_000, output_tokens=1_000)
    short = book.cost(Usage(150_000, 1_000), "gemini-2.5-pro", "gcp.gemini", when)
    assert long.input_usd / 250_000 > short.input_usd / 150_000  # above 200k every token costs more
    sonar = book.cost(Usage(1_000, 200), "sonar", "perplexity", when)
    want = _expected("sonar", "perplexity", when, input_tokens=1_000, output_tokens=200)
    assert (sonar.input_usd, sonar.output_usd, sonar.total_usd) == want
    assert sonar.fees_usd == want[2] - want[0] - want[1] > 0  # the per-request fee


def test_a_tier_genai_prices_lacks_is_filled_by_an_override() -> None:
    when = datetime(2026, 6, 1, tzinfo=timezone.utc)
    u = Usage(10_000, 1_000, service_tier="batch")
    plain = PriceBook().cost(u, "claude-sonnet-4-0", "anthropic", when)
    assert "no batch price" in plain.source  # billed at the standard price, and said so
    assert plain.total_usd == _expected("claude-sonnet-4-0", "anthropic", when, input_tokens=10_000, output_tokens=1_000)[2]
    from tokentrail.pricing import parse_overrides

    book = PriceBook(parse_overrides({"claude-sonnet-4-0@batch": {"input_per_mtok": "1.5", "output_per_mtok": "7.5", "web_search_per_k": 10}}))
    batch = book.cost(u, "claude-sonnet-4-0", "anthropic", when)
    assert (batch.status, batch.total_usd, batch.price_id) == (sc.COST_OVERRIDE, Decimal("0.022500000"), "ov/claude-sonnet-4-0@batch")
    standard = book.cost(Usage(10_000, 1_000), "claude-sonnet-4-0", "anthropic", when)
    assert standard.status == sc.COST_PRICED  # other calls stay with genai-prices


def test_raw_usage_shapes() -> None:
    body = _anthropic_body("claude-sonnet-4-5")
    u = from_mapping(body)
    assert u == Usage(8120, 80, 5000, 3000, 0, cache_write_1h_tokens=2000, web_search_requests=3)
    assert from_mapping(_responses_body("gpt-4.1")) == Usage(1200, 300, web_search_requests=2)
    flex = openai_chat_completion()
    flex["service_tier"] = "flex"
    assert from_mapping(flex).service_tier == "flex"  # type: ignore[union-attr]
    assert from_mapping(openai_chat_completion()).service_tier == ""  # type: ignore[union-attr]  # "default" is standard
