"""In, in-process: other instrumentations' GenAI spans priced into tokentrail's ledger.

The real packages (openinference-instrumentation-langchain / -llama-index, OpenLLMetry's
opentelemetry-instrumentation-langchain, opentelemetry-instrumentation-openai-v2) drive the real
LangChain, LlamaIndex and OpenAI clients against the loopback provider mocks; each foreign row
must carry exactly the tokens and dollars tokentrail's own hooks record for the same payload.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from conftest import spans
from langchain_openai import ChatOpenAI
from llama_index.core.llms import ChatMessage
from llama_index.llms.openai import OpenAI as LlamaOpenAI
from mock_providers import openai_server
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tokentrail
from tokentrail import runtime
from tokentrail.interop.foreign import ForeignSpanProcessor

MONEY = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens",
         "cost_usd", "input_cost_usd", "output_cost_usd", "cost_status", "provider")
CACHED = dict(model="gpt-4o-2024-08-06", prompt_tokens=1000, cached_tokens=400, completion_tokens=200, reasoning_tokens=50)
PLAIN = dict(model="gpt-4o-mini-2024-07-18", prompt_tokens=321, cached_tokens=0, completion_tokens=45)


def _instrumentor(name: str) -> Any:
    if name == "openinference-langchain":
        from openinference.instrumentation.langchain import LangChainInstrumentor

        return LangChainInstrumentor()
    if name == "openllmetry-langchain":
        from opentelemetry.instrumentation.langchain import LangchainInstrumentor

        return LangchainInstrumentor()
    if name == "openai-v2":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        return OpenAIInstrumentor()
    from openinference.instrumentation.llama_index import LlamaIndexInstrumentor

    return LlamaIndexInstrumentor()


class _Relay(SpanProcessor):
    """OpenLLMetry's LangChainInstrumentor cannot be instrumented a second time in a process
    (0.62: after uninstrument() and instrument() with a new provider no span is made), so it is
    instrumented once for this module, on a provider relaying to the current test's processors."""

    targets: tuple[SpanProcessor, ...] = ()

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        for t in self.targets:
            t.on_start(span, parent_context)

    def on_end(self, span: Any) -> None:
        for t in self.targets:
            t.on_end(span)


_RELAY = _Relay()
_RELAYED: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def _relayed_teardown() -> Iterator[None]:
    yield
    for inst in _RELAYED.values():
        inst.uninstrument()
    _RELAYED.clear()


class Foreign:
    def __init__(self, rt: runtime.Tokentrail) -> None:
        self.processor = ForeignSpanProcessor(rt)
        self.memory = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(self.processor)
        self.provider.add_span_processor(SimpleSpanProcessor(self.memory))
        self.active: list[Any] = []

    def instrument(self, *names: str) -> Foreign:
        for name in names:
            if name == "openllmetry-langchain":
                if name not in _RELAYED:
                    relay_provider = TracerProvider()
                    relay_provider.add_span_processor(_RELAY)
                    _RELAYED[name] = _instrumentor(name)
                    _RELAYED[name].instrument(tracer_provider=relay_provider)
                _RELAY.targets = (self.processor, SimpleSpanProcessor(self.memory))
                continue
            inst = _instrumentor(name)
            inst.instrument(tracer_provider=self.provider)
            self.active.append(inst)
        return self

    def close(self) -> None:
        _RELAY.targets = ()
        for inst in self.active:
            inst.uninstrument()


@pytest.fixture
def foreign(tt: runtime.Tokentrail) -> Iterator[Foreign]:
    f = Foreign(tt)
    yield f
    f.close()


def _rows(rt: runtime.Tokentrail, where: str) -> list[dict[str, Any]]:
    return spans(rt, where)


def _money(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[k] for k in MONEY)


def _langchain(srv: Any, stream: bool, callbacks: Any = None) -> None:
    llm = ChatOpenAI(model="gpt-4o", base_url=srv.url + "/v1", api_key="sk-test", max_retries=0, stream_usage=True)
    config = {"callbacks": callbacks} if callbacks else None
    if stream:
        assert "".join(str(c.content) for c in llm.stream("hi", config=config)) == "Hello! How can I help?"
    else:
        llm.invoke("hi", config=config)


def _openai(srv: Any, stream: bool) -> None:
    client = openai.OpenAI(base_url=srv.url + "/v1", api_key="sk-test", max_retries=0)
    msgs: Any = [{"role": "user", "content": "hi"}]
    if stream:
        for _ in client.chat.completions.create(model="gpt-4o", messages=msgs, stream=True, stream_options={"include_usage": True}):
            pass
    else:
        client.chat.completions.create(model="gpt-4o", messages=msgs)


def _llamaindex(srv: Any, stream: bool) -> None:
    llm = LlamaOpenAI(model="gpt-4o", api_key="test", api_base=srv.url + "/v1", max_retries=0,
                      additional_kwargs={"stream_options": {"include_usage": True}} if stream else {})
    msgs = [ChatMessage(role="user", content="hi")]
    if stream:
        list(llm.stream_chat(msgs))
    else:
        llm.chat(msgs)


def _own_row(rt: runtime.Tokentrail, payload: dict[str, Any], stream: bool, framework: str) -> dict[str, Any]:
    """What tokentrail's own hooks record for the same payload (LangChain or LlamaIndex)."""
    with openai_server(**payload) as srv:
        if framework == "llamaindex":
            with tokentrail.instrument_llamaindex():
                _llamaindex(srv, stream)
        else:
            _langchain(srv, stream, [tokentrail.langchain_handler()])
    (row,) = _rows(rt, f"framework = '{framework}'")
    return row


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
def test_openinference_langchain_exact(tt: Any, foreign: Foreign, stream: bool) -> None:
    _langchain_exact(tt, foreign, "openinference-langchain", "openinference", stream)


def _langchain_exact(tt: Any, foreign: Foreign, name: str, family: str, stream: bool) -> None:
    own = _own_row(tt, CACHED, stream, "langchain")
    assert own["cost_usd"] > 0 and own["cache_read_tokens"] == 400 and own["reasoning_tokens"] == 50
    foreign.instrument(name)
    with openai_server(**CACHED) as srv, tokentrail.attributes(user_id="alice", feature="faq"):
        _langchain(srv, stream)
    (row,) = _rows(tt, f"framework = '{family}'")
    if family == "openllmetry":
        # OpenLLMetry's LangChain span has no reasoning count (gpt-4o prices none apart: same dollars)
        assert row["reasoning_tokens"] == 0
        row = {**row, "reasoning_tokens": own["reasoning_tokens"]}
    assert _money(row) == _money(own)
    assert (row["user_id"], row["feature"], row["project"], row["operation"]) == ("alice", "faq", "test", "chat")
    (model_span,) = [s for s in foreign.memory.get_finished_spans() if s.get_span_context().span_id == int(row["span_id"], 16)]
    assert row["trace_id"] == format(model_span.get_span_context().trace_id, "032x")


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
def test_openai_v2_exact(tt: Any, foreign: Foreign, stream: bool) -> None:
    own = _own_row(tt, PLAIN, stream, "langchain")
    foreign.instrument("openai-v2")
    with openai_server(**PLAIN) as srv:
        _openai(srv, stream)
    (row,) = _rows(tt, "framework = 'otel-genai'")
    assert _money(row) == _money(own)
    assert (row["request_model"], row["response_model"]) == ("gpt-4o", "gpt-4o-mini-2024-07-18")


def test_openai_v2_reports_no_cache_tokens(tt: Any, foreign: Foreign) -> None:
    """openai-v2 2.4b0 does not report cached prompt tokens: its call is priced as all fresh
    input (what its span says), dearer than tokentrail's own hooks, which see the cache."""
    foreign.instrument("openai-v2")
    with openai_server(**CACHED) as srv:
        _openai(srv, False)
    (row,) = _rows(tt, "framework = 'otel-genai'")
    assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"]) == (1000, 0, 200)
    from decimal import Decimal

    assert row["cost_usd"] == Decimal("0.0045")  # 1000 * $2.50/M + 200 * $10/M


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
def test_openinference_llamaindex_exact(tt: Any, foreign: Foreign, stream: bool) -> None:
    own = _own_row(tt, CACHED, stream, "llamaindex")
    foreign.instrument("openinference-llama-index")
    with openai_server(**CACHED) as srv:
        _llamaindex(srv, stream)
    (row,) = _rows(tt, "framework = 'openinference'")
    assert _money(row) == _money(own)


def test_seen_by_tokentrail_and_openinference_counted_once(tt: Any, foreign: Foreign) -> None:
    foreign.instrument("openinference-langchain")
    with openai_server(**CACHED) as srv, tokentrail.instrument_langchain():
        _langchain(srv, False)
    rows = _rows(tt, "operation = 'chat'")
    assert [r["framework"] for r in rows] == ["langchain"]
    assert foreign.processor.duplicates == 1


def test_seen_by_tokentrail_and_openai_v2_counted_once(tt: Any, foreign: Foreign) -> None:
    foreign.instrument("openai-v2")
    with openai_server(**CACHED) as srv:
        _langchain(srv, False, [tokentrail.langchain_handler()])
    rows = _rows(tt, "operation = 'chat'")
    assert [r["framework"] for r in rows] == ["langchain"]
    assert rows[0]["cache_read_tokens"] == 400  # tokentrail's hooks, which see the cache
    assert foreign.processor.duplicates == 1


def test_instrument_otel_on_the_global_provider(tt: Any) -> None:
    from opentelemetry import trace

    p1 = tokentrail.instrument_otel()
    assert tokentrail.instrument_otel() is p1
    tracer = trace.get_tracer("my-app")
    with tracer.start_as_current_span("chat my-model", attributes={"gen_ai.operation.name": "chat",
                                       "gen_ai.request.model": "gpt-4o", "gen_ai.provider.name": "openai",
                                       "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 2,
                                       "user.id": "u1"}):
        pass
    with tracer.start_as_current_span("not genai"):
        pass
    (row,) = _rows(tt, "1")
    from decimal import Decimal

    assert (row["user_id"], row["cost_usd"], row["framework"]) == ("u1", Decimal("0.000045"), "otel-genai")


def test_anthropic_style_exclusive_cache_counted_once() -> None:
    from tokentrail.interop import normalise as nz
    from tokentrail.usage import Usage

    # OpenLLMetry's Anthropic shape: input without the cache, total with it
    a = {"gen_ai.usage.input_tokens": 100, "gen_ai.usage.output_tokens": 20, "llm.usage.total_tokens": 720,
         "gen_ai.usage.cache_read_input_tokens": 500, "gen_ai.usage.cache_creation_input_tokens": 100}
    assert nz.usage(a, nz.OPENLLMETRY) == Usage(700, 20, 500, 100, 0)
    # the conventions' shape: subsets, counted once
    b = {"llm.token_count.prompt": 700, "llm.token_count.completion": 20, "llm.token_count.total": 720,
         "llm.token_count.prompt_details.cache_read": 500, "llm.token_count.completion_details.reasoning": 5}
    assert nz.usage(b, nz.OPENINFERENCE) == Usage(700, 20, 500, 0, 5)
    # reasoning apart from output (Gemini's way), told by the total
    c = {"gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 4, "gen_ai.usage.total_tokens": 20,
         "gen_ai.usage.reasoning.output_tokens": 6}
    assert nz.usage(c, nz.OTEL_GENAI) == Usage(10, 10, 0, 0, 6)
    bad = nz.usage({"gen_ai.usage.input_tokens": -3, "gen_ai.usage.output_tokens": 1}, nz.OTEL_GENAI)
    assert bad is not None and bad.input_tokens == 0 and bad.invalid == ("gen_ai.usage.input_tokens=-3",)


def test_openllmetry_in_a_process_of_its_own() -> None:
    """OpenLLMetry's LangChainInstrumentor leaves LangChain changed after uninstrument() (a
    context of its own left current, runs it cannot find): its cases run in a child pytest, so
    the rest of the suite sees LangChain as it is."""
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).parent
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(here / "interop_openllmetry_cases.py")],
        cwd=here.parent, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "3 passed" in out.stdout
