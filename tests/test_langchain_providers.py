"""Real provider clients (langchain-openai, langchain-anthropic) against loopback servers that
answer with each provider's real response bodies and SSE streams: exact tokens, exact dollars."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from genai_prices import Usage as GPUsage
from genai_prices import calc_price
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import HumanMessage
from langchain_openai import ChatOpenAI, OpenAI, OpenAIEmbeddings
from mock_providers import (
    LoopbackServer,
    Reply,
    anthropic_server,
    anthropic_stream_events,
    openai_error,
    openai_server,
)
from opentelemetry.trace import StatusCode

import tokentrail
from tokentrail import runtime
from tokentrail import semconv as sc


def _price(model: str, provider: str, start_ns: int, **usage: int) -> Any:
    when = datetime.fromtimestamp(start_ns / 1e9, tz=timezone.utc)
    return calc_price(GPUsage(**usage), model_ref=model, provider_id=provider, genai_request_timestamp=when)


def _assert_cost(span: Any, model: str, provider: str, **usage: int) -> None:
    expected = _price(model, provider, span.start_time, **usage)
    a = span.attributes
    assert Decimal(a[sc.COST_USD]) == expected.total_price
    assert Decimal(a[sc.COST_INPUT_USD]) == expected.input_price
    assert Decimal(a[sc.COST_OUTPUT_USD]) == expected.output_price
    assert a[sc.COST_STATUS] == "priced"


def _tokens(span: Any) -> tuple[int, int, int, int, int]:
    a = span.attributes
    return (
        a[sc.GEN_AI_USAGE_INPUT_TOKENS],
        a[sc.GEN_AI_USAGE_OUTPUT_TOKENS],
        a.get(sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, 0),
        a.get(sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS, 0),
        a.get(sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, 0),
    )


def test_chat_openai_cached_and_reasoning_tokens(mem: Any) -> None:
    rt, exporter = mem
    usage = dict(prompt_tokens=1000, cached_tokens=500, completion_tokens=300, reasoning_tokens=200)
    with openai_server(model="o4-mini-2025-04-16", **usage) as srv:
        llm = ChatOpenAI(model="o4-mini", base_url=srv.url + "/v1", api_key="sk-test", max_retries=0)
        llm.invoke("Why is the sky blue?", config={"callbacks": [tokentrail.langchain_handler()]})
        assert srv.requests[0].json["model"] == "o4-mini"
    (span,) = exporter.get_finished_spans()
    assert span.name == "chat o4-mini"
    a = span.attributes
    assert (a[sc.GEN_AI_PROVIDER_NAME], a[sc.GEN_AI_REQUEST_MODEL], a[sc.GEN_AI_RESPONSE_MODEL]) == (
        "openai",
        "o4-mini",
        "o4-mini-2025-04-16",
    )
    assert _tokens(span) == (1000, 300, 500, 0, 200)
    assert sc.USAGE_ESTIMATED not in a
    _assert_cost(span, "o4-mini-2025-04-16", "openai", input_tokens=1000, cache_read_tokens=500, output_tokens=300)


def test_chat_openai_stream_usage_ttft_and_n(mem: Any) -> None:
    rt, exporter = mem
    handler = tokentrail.langchain_handler()
    with openai_server(model="gpt-4o-mini-2024-07-18", prompt_tokens=40, cached_tokens=0, completion_tokens=7) as srv:
        llm = ChatOpenAI(model="gpt-4o-mini", base_url=srv.url + "/v1", api_key="sk-test", stream_usage=True, max_retries=0)
        text = "".join(str(c.content) for c in llm.stream("hi", config={"callbacks": [handler]}))
        assert text == "Hello! How can I help?"
        assert srv.requests[0].json["stream_options"] == {"include_usage": True}
        (span,) = exporter.get_finished_spans()
        assert _tokens(span) == (40, 7, 0, 0, 0)
        assert span.attributes[sc.TIME_TO_FIRST_TOKEN_MS] > 0
        assert span.attributes[sc.TIME_TO_FIRST_TOKEN_MS] <= (span.end_time - span.start_time) / 1e6
        _assert_cost(span, "gpt-4o-mini-2024-07-18", "openai", input_tokens=40, output_tokens=7)

        # n=2: one request, two generations; usage is the request's, counted once
        exporter.clear()
        result = ChatOpenAI(model="gpt-4o-mini", base_url=srv.url + "/v1", api_key="sk-test", n=2, max_retries=0).generate(
            [[HumanMessage("hi")]], callbacks=[handler]
        )
        assert len(result.generations[0]) == 2 and srv.requests[-1].json["n"] == 2
        (span,) = exporter.get_finished_spans()
        assert _tokens(span) == (40, 7, 0, 0, 0)
    assert handler.open_runs == 0 and rt.open_spans == 0


def test_openai_http_retry_error_and_completion(mem: Any) -> None:
    rt, exporter = mem
    handler = tokentrail.langchain_handler()
    with openai_server(model="gpt-4o-mini-2024-07-18", prompt_tokens=12, completion_tokens=3) as srv:
        # the client retries a 500 inside one run: one span, usage of the answer once
        retry_fast = openai_error(500)
        retry_fast.headers["retry-after-ms"] = "1"
        srv.push(retry_fast)
        llm = ChatOpenAI(model="gpt-4o-mini", base_url=srv.url + "/v1", api_key="sk-test", max_retries=1)
        llm.invoke("hi", config={"callbacks": [handler]})
        assert len(srv.requests) == 2
        (span,) = exporter.get_finished_spans()
        assert span.status.status_code is StatusCode.UNSET and _tokens(span) == (12, 3, 0, 0, 0)

        exporter.clear()
        srv.push(openai_error(400, "bad model", "invalid_request_error"))
        with pytest.raises(Exception, match="bad model") as raised:
            ChatOpenAI(model="gpt-4o-mini", base_url=srv.url + "/v1", api_key="sk-test", max_retries=0).invoke(
                "hi", config={"callbacks": [handler]}
            )
        (span,) = exporter.get_finished_spans()
        assert span.status.status_code is StatusCode.ERROR
        # the class the caller saw (langchain-openai re-raises openai's BadRequestError as its own)
        assert span.attributes[sc.ERROR_TYPE] == type(raised.value).__qualname__
        assert span.attributes[sc.COST_STATUS] == "no_usage"

        exporter.clear()
        OpenAI(model="gpt-3.5-turbo-instruct", base_url=srv.url + "/v1", api_key="sk-test", max_retries=0).invoke(
            "Say hello", config={"callbacks": [handler]}
        )
        (span,) = exporter.get_finished_spans()
        assert span.name == "text_completion gpt-3.5-turbo-instruct"
        assert span.attributes[sc.GEN_AI_OPERATION_NAME] == "text_completion"
        assert _tokens(span) == (12, 3, 0, 0, 0)
        _assert_cost(span, "gpt-3.5-turbo-instruct", "openai", input_tokens=12, output_tokens=3)
    assert handler.open_runs == 0 and rt.open_spans == 0


def test_openai_embeddings_tokens_from_the_response(mem: Any) -> None:
    rt, exporter = mem
    with openai_server(model="text-embedding-3-small", embedding_tokens=17) as srv, tokentrail.instrument_langchain():
        emb = OpenAIEmbeddings(
            model="text-embedding-3-small", base_url=srv.url + "/v1", api_key="sk-test", check_embedding_ctx_length=False
        )
        vectors = emb.embed_documents(["first document", "second document"])
        assert len(vectors) == 2 and len(vectors[0]) == 8
        emb.embed_query("a query")  # embed_query calls embed_documents: still one span
        assert len(srv.requests) == 2
    first, second = exporter.get_finished_spans()
    assert first.name == "embeddings text-embedding-3-small"
    a = first.attributes
    assert (a[sc.GEN_AI_OPERATION_NAME], a[sc.GEN_AI_PROVIDER_NAME]) == ("embeddings", "openai")
    assert (a[sc.GEN_AI_USAGE_INPUT_TOKENS], a[sc.GEN_AI_USAGE_OUTPUT_TOKENS]) == (17, 0)
    assert sc.USAGE_ESTIMATED not in a  # the provider's count
    _assert_cost(first, "text-embedding-3-small", "openai", input_tokens=17)
    assert second.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 17


def test_chat_anthropic_cache_tokens_plain_and_streamed(tt: runtime.Tokentrail, read_spans: Any) -> None:
    usage = dict(input_tokens=100, cache_creation_input_tokens=200, cache_read_input_tokens=300, output_tokens=50)
    handler = tokentrail.langchain_handler(feature="anthropic")
    with anthropic_server(**usage) as srv:
        llm = ChatAnthropic(model="claude-sonnet-4-20250514", base_url=srv.url, api_key="sk-ant-test", max_retries=0)
        assert llm.invoke("hi", config={"callbacks": [handler], "run_name": "plain"}).content == "Hello! How can I help?"
        streamed = "".join(str(c.content) for c in llm.stream("hi", config={"callbacks": [handler]}))
        assert streamed == "Hello! How can I help?"
        assert srv.requests[1].json["stream"] is True
    rows = read_spans()
    assert len(rows) == 2
    expected = _price(
        "claude-sonnet-4-20250514",
        "anthropic",
        int(rows[0]["timestamp"].timestamp() * 1e9),
        input_tokens=600,
        cache_read_tokens=300,
        cache_write_tokens=200,
        output_tokens=50,
    )
    for row in rows:
        assert row["name"] == "chat claude-sonnet-4-20250514"
        assert (row["provider"], row["response_model"], row["feature"]) == ("anthropic", "claude-sonnet-4-20250514", "anthropic")
        # Anthropic's input_tokens excludes the cache: 100 + 200 written + 300 read
        assert (row["input_tokens"], row["output_tokens"]) == (600, 50)
        assert (row["cache_read_tokens"], row["cache_write_tokens"]) == (300, 200)
        assert row["cost_usd"] == expected.total_price
        assert row["input_cost_usd"] == expected.input_price and row["output_cost_usd"] == expected.output_price
        assert row["usage_estimated"] is False
    plain, stream = rows
    assert plain["time_to_first_token_ms"] is None
    assert stream["time_to_first_token_ms"] is not None and 0 < stream["time_to_first_token_ms"] <= stream["duration_ms"]


def test_chat_anthropic_stream_keeps_one_hour_writes_and_web_searches(mem: Any) -> None:
    """Issue 14: langchain-anthropic's stream chunks carry message_delta's usage alone, without
    the one-hour cache writes (message_start's cache_creation) or the server tool use
    (message_delta's server_tool_use); both are billed, and recorded from the raw events."""
    _, exporter = mem
    model = "claude-sonnet-4-5-20250929"
    events = anthropic_stream_events(model=model, input_tokens=120, output_tokens=80)
    events[0][1]["message"]["usage"].update(
        cache_creation_input_tokens=3000,
        cache_read_input_tokens=5000,
        cache_creation={"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
    )
    (delta,) = [data for name, data in events if name == "message_delta"]
    # the API's message_delta: cumulative counts, no TTL split, the server tool use
    delta["usage"].update(cache_creation_input_tokens=3000, cache_read_input_tokens=5000, server_tool_use={"web_search_requests": 3})
    with LoopbackServer() as srv:
        srv.push(Reply(events=events))
        llm = ChatAnthropic(model=model, base_url=srv.url, api_key="sk-ant-test", max_retries=0)
        chunks = list(llm.stream("hi", config={"callbacks": [tokentrail.langchain_handler()]}))
        assert srv.requests[0].json["stream"] is True
    assert "".join(str(c.content) for c in chunks) == "Hello! How can I help?"
    # what the user's chunks say is what langchain-anthropic made of them: nothing added
    assert not any("server_tool_use" in (c.usage_metadata or {}) for c in chunks)
    (span,) = exporter.get_finished_spans()
    a = span.attributes
    assert (a[sc.GEN_AI_USAGE_INPUT_TOKENS], a[sc.GEN_AI_USAGE_OUTPUT_TOKENS]) == (8120, 80)
    assert (a[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS], a[sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS]) == (5000, 3000)
    assert (a[sc.USAGE_CACHE_WRITE_1H_TOKENS], a[sc.USAGE_WEB_SEARCH_REQUESTS]) == (2000, 3)
    expected = _price(
        model,
        "anthropic",
        span.start_time,
        input_tokens=8120,
        cache_read_tokens=5000,
        cache_write_tokens=3000,
        cache_write_1h_tokens=2000,
        output_tokens=80,
        web_searches=3,
    )
    assert (Decimal(a[sc.COST_INPUT_USD]), Decimal(a[sc.COST_OUTPUT_USD])) == (expected.input_price, expected.output_price)
    assert Decimal(a[sc.COST_USD]) == expected.total_price
    # $3/M in, $0.30/M read, $3.75/M 5-minute write, $6/M 1-hour write, $15/M out, $10 per 1,000 searches
    assert expected.total_price == Decimal("0.000360") + Decimal("0.0015") + Decimal("0.00375") + Decimal("0.012") + Decimal("0.0012") + Decimal("0.03")


def test_openai_stream_abandoned_half_way_charges_the_input(mem: Any) -> None:
    rt, exporter = mem
    handler = tokentrail.langchain_handler()
    with openai_server(model="gpt-4o-mini-2024-07-18", prompt_tokens=40, completion_tokens=7) as srv:
        srv.push(Reply(events=_slow_stream(), events_delay=0.01))
        llm = ChatOpenAI(model="gpt-4o-mini", base_url=srv.url + "/v1", api_key="sk-test", stream_usage=True, max_retries=0)
        stream = llm.stream([("user", "Tell me a long story")], config={"callbacks": [handler]})
        first = [next(stream), next(stream)]
        assert "".join(str(c.content) for c in first) == "Once"
        stream.close()  # the caller stops reading
    (span,) = exporter.get_finished_spans()
    a = span.attributes
    assert span.status.status_code is StatusCode.UNSET and a["tokentrail.abandoned"] is True
    from tokentrail import tokens

    assert a[sc.USAGE_ESTIMATED] is True
    assert a[sc.GEN_AI_USAGE_INPUT_TOKENS] == tokens.count_messages([("user", "Tell me a long story")], "gpt-4o-mini")
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == tokens.count_tokens("Once", "gpt-4o-mini")
    assert Decimal(a[sc.COST_USD]) > 0
    assert handler.open_runs == 0 and rt.open_spans == 0


def _slow_stream() -> list[tuple[str | None, Any]]:
    from mock_providers import openai_chat_stream_events

    return openai_chat_stream_events(model="gpt-4o-mini-2024-07-18", pieces=["Once", " upon", " a", " time"] * 20)
