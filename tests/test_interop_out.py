"""Out: tokentrail's model-call spans carry the cost attributes other backends read, and go
to any OTLP/HTTP endpoint (here a loopback receiver decoding with opentelemetry-proto)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from langchain_openai import ChatOpenAI
from mock_providers import openai_server
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otlp_receiver import OtlpReceiver, langfuse_cost, langfuse_usage

import tokentrail
from tokentrail import semconv as sc
from tokentrail import testing
from tokentrail.errors import ConfigError
from tokentrail.exporters.otlp import traces_endpoint


def _call(srv: Any, **kw: Any) -> None:
    llm = ChatOpenAI(model="gpt-4o", base_url=srv.url + "/v1", api_key="sk-test", max_retries=0, **kw)
    with tokentrail.attributes(user_id="alice", session_id="s-1"):
        llm.invoke("hi", config={"callbacks": [tokentrail.langchain_handler()]})


@pytest.fixture
def done() -> Any:
    yield
    testing.reset()


def test_langfuse_reads_usage_and_cost_over_otlp(tt_home: Any, done: Any) -> None:
    with OtlpReceiver() as rx, openai_server(model="gpt-4o-2024-08-06", prompt_tokens=1000, cached_tokens=400, completion_tokens=200) as srv:
        rt = tokentrail.configure(home=tt_home, project="p", otlp_endpoint=rx.url)
        _call(srv)
        assert rt.flush()
        assert rx.paths == ["/v1/traces"]
        (span,) = rx.spans
        a = span["attributes"]
        # exact ledger strings beside the float other backends read
        assert Decimal(a[sc.COST_USD]) == Decimal("0.004")  # 600*2.5e-6 + 400*1.25e-6 + 200*1e-5
        assert a["gen_ai.usage.cost"] == 0.004 and isinstance(a["gen_ai.usage.cost"], float)
        assert langfuse_cost(a) == {"total": 0.004}
        assert langfuse_usage(a) == {"input": 1000.0, "output": 200.0, "cache_read.input_tokens": 400.0}
        assert (a["user.id"], a["session.id"], a["gen_ai.request.model"]) == ("alice", "s-1", "gpt-4o")
        assert span["resource"]["service.name"] == "tokentrail-app"
        assert "gen_ai.usage.cost.amount" not in a  # the draft attributes stay behind their option
        assert rt.otlp.sent_spans == 1 and rt.otlp.failed_spans == 0
    # the store got the same span, its cost exact, the float copy not repeated in attributes
    from conftest import spans

    (row,) = spans(rt)
    assert row["cost_usd"] == Decimal("0.004") and row["span_id"] == span["span_id"]
    assert "gen_ai.usage.cost" not in row["attributes"]


def test_draft_cost_attributes_and_standard_env(tt_home: Any, done: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with OtlpReceiver() as rx, openai_server(model="gpt-4o-2024-08-06", prompt_tokens=100, cached_tokens=0, completion_tokens=10) as srv:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", rx.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Basic cGs6c2s=")
        monkeypatch.setenv("TOKENTRAIL_COST_ATTRIBUTES_DRAFT", "true")
        rt = tokentrail.configure(home=tt_home)
        _call(srv)
        rt.flush()
        (span,) = rx.spans
        a = span["attributes"]
        assert a["gen_ai.usage.cost.amount"] == a["gen_ai.usage.cost"] == float(Decimal("0.00035"))
        assert (a["gen_ai.usage.cost.currency"], a["gen_ai.usage.cost.source"]) == ("USD", "local")
        assert {k.lower(): v for k, v in rx.headers[0].items()}["authorization"] == "Basic cGs6c2s="


def test_additional_span_processors_and_unpriced(tt_home: Any, done: Any) -> None:
    mine = InMemorySpanExporter()
    with openai_server(model="my-own-model", prompt_tokens=10, cached_tokens=0, completion_tokens=1) as srv:
        rt = tokentrail.configure(home=tt_home, additional_span_processors=[SimpleSpanProcessor(mine)])
        llm = ChatOpenAI(model="my-own-model", base_url=srv.url + "/v1", api_key="sk-test", max_retries=0)
        llm.invoke("hi", config={"callbacks": [tokentrail.langchain_handler()]})
    (span,) = mine.get_finished_spans()
    assert span.attributes[sc.COST_STATUS] == "unpriced"
    assert "gen_ai.usage.cost" not in span.attributes  # unknown is no cost, never $0
    assert rt.otlp is None


def test_otlp_endpoint_resolution(tt_home: Any) -> None:
    assert traces_endpoint(None, {}) is None
    assert traces_endpoint("http://h:4318/", {}) == "http://h:4318/v1/traces"
    assert traces_endpoint("https://cloud.langfuse.com/api/public/otel/v1/traces", {}) == "https://cloud.langfuse.com/api/public/otel/v1/traces"
    assert traces_endpoint(None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) == "http://c:4318/v1/traces"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:1/x"}
    assert traces_endpoint(None, env) == "http://t:1/x"
    assert traces_endpoint("none", env) is None
    with pytest.raises(ConfigError, match="otlp_endpoint"):
        tokentrail.configure(home=tt_home, otlp_endpoint="grpc://x")


def test_failed_otlp_export_is_counted(tt_home: Any, done: Any) -> None:
    with OtlpReceiver() as rx:
        dead = rx.url
    with openai_server(model="gpt-4o-2024-08-06", prompt_tokens=1, cached_tokens=0, completion_tokens=1) as srv:
        rt = tokentrail.configure(home=tt_home, otlp_endpoint=dead)
        rt.otlp.inner._timeout = 1
        _call(srv)
        rt.flush()
    assert (rt.otlp.sent_spans, rt.otlp.failed_spans) == (0, 1)
    from conftest import spans

    assert len(spans(rt)) == 1  # the ledger has it all the same
