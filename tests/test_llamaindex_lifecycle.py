"""LlamaIndex instrumentation: budgets (block before the provider, settle, release), no span
leaks over 1,000 calls, errors, attribution across asyncio and threads, install / undo."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.llms.types import (
    ChatMessage,
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.llms import CustomLLM, MockLLM
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.embeddings.openai import OpenAIEmbedding
from llama_index.llms.openai import OpenAI
from llamaindex_mocks import FailingLLM, ProbeLLM
from mock_providers import openai_error, openai_server
from opentelemetry.trace import StatusCode
from otel_helpers import configure_memory
from otel_helpers import parent_id as hex_parent
from otel_helpers import span_id as hex_id

import tokentrail
from tokentrail import Budget, BudgetExceeded, runtime, testing
from tokentrail.instrumentation import llamaindex as li_mod
from tokentrail.instrumentation.llamaindex import readers as _usage

GPT4O_COST = Decimal("0.002875")


@pytest.fixture
def mem(tt_home: Path) -> Iterator[tuple[runtime.Tokentrail, Any]]:
    rt, exporter = configure_memory(tt_home)
    handle = tokentrail.instrument_llamaindex()
    yield rt, exporter
    errors = handle.errors
    assert rt.open_spans == 0  # checked before uninstrument(), which ends what is left
    handle.uninstrument()
    rt.shutdown()
    testing.reset()
    assert errors == [], errors


@pytest.fixture
def budgeted(tt_home: Path, monkeypatch: pytest.MonkeyPatch, clock: Any, runtimes: list[runtime.Tokentrail]) -> Iterator[Any]:
    """configure(budgets=...) + instrumentation; the budget refresh only runs at start; day and
    month budgets count on the fixed clock (1 ms a read)."""
    clock.step_ns = 1_000_000
    monkeypatch.setenv("TOKENTRAIL_BUDGET_REFRESH_SECONDS", "3600")
    made = runtimes
    handle = tokentrail.instrument_llamaindex()

    def make(*budgets: Budget) -> runtime.Tokentrail:
        rt = tokentrail.configure(home=tt_home, project="shop", budgets=list(budgets))
        made.append(rt)
        assert rt.budgets is not None
        rt.budgets.wait_ready(10)
        return rt

    yield make
    errors = handle.errors
    assert [rt.open_spans for rt in made] == [0] * len(made)  # before uninstrument() ends them
    handle.uninstrument()
    assert errors == [], errors


def _names(exporter: Any) -> list[str]:
    return [s.name for s in exporter.get_finished_spans()]


# -- budgets -------------------------------------------------------------------------------


def test_blocking_budget_stops_the_call_before_the_provider(budgeted: Any) -> None:
    rt = budgeted(Budget(name="tiny", limit_usd=0.001, period="day", action="block"))
    with openai_server() as srv:
        llm = OpenAI(model="gpt-4o", api_key="test", api_base=srv.url + "/v1", max_retries=0, max_tokens=500)
        with pytest.raises(BudgetExceeded) as exc:
            llm.chat([ChatMessage(role="user", content="hi")])
        assert exc.value.budget == "tiny"
        with pytest.raises(BudgetExceeded):
            llm.stream_chat([ChatMessage(role="user", content="hi")])
        with pytest.raises(BudgetExceeded):
            llm.complete("hi")
        index = VectorStoreIndex.from_documents([Document(text="a b c")], embed_model=MockEmbedding(embed_dim=4))
        with pytest.raises(BudgetExceeded):  # from deep inside a query engine, to its caller
            index.as_query_engine(llm=llm).query("q")
        assert srv.requests == []  # the provider never saw a request
    assert rt.budgets.reserved_usd("tiny") == 0
    rows = _read(rt, "operation IN ('chat', 'text_completion')")
    assert len(rows) == 4
    for r in rows:
        assert (r["status"], r["error_type"], r["cost_status"], r["input_tokens"]) == ("error", "BudgetExceeded", "no_usage", 0)
    [q] = _read(rt, "name = 'RetrieverQueryEngine.query'")
    assert (q["status"], q["error_type"]) == ("error", "BudgetExceeded")


def test_budget_settles_real_cost_and_releases_on_error(budgeted: Any) -> None:
    rt = budgeted(Budget(name="team", limit_usd=5, period="month", scope={"team": "search"}, action="block"))
    with openai_server(prompt_tokens=1000, cached_tokens=500, completion_tokens=100) as srv:
        llm = OpenAI(model="gpt-4o", api_key="test", api_base=srv.url + "/v1", max_retries=0)
        with tokentrail.attributes(team="search"):
            llm.chat([ChatMessage(role="user", content="hi")])
            chunks = list(
                OpenAI(
                    model="gpt-4o",
                    api_key="test",
                    api_base=srv.url + "/v1",
                    max_retries=0,
                    additional_kwargs={"stream_options": {"include_usage": True}},
                ).stream_chat([ChatMessage(role="user", content="hi")])
            )
            assert chunks
        assert rt.budgets.spent("team") == 2 * GPT4O_COST
        assert rt.budgets.reserved_usd("team") == 0
        srv.push(openai_error(500))
        with tokentrail.attributes(team="search"), pytest.raises(Exception) as exc:
            llm.chat([ChatMessage(role="user", content="hi")])
        assert "500" in str(exc.value) or "error" in str(exc.value).lower()
        assert rt.budgets.reserved_usd("team") == 0
        assert rt.budgets.spent("team") == 2 * GPT4O_COST
        # embeddings are reserved and settled too (tokens counted offline)
        emb = OpenAIEmbedding(model="text-embedding-3-small", api_key="test", api_base=srv.url + "/v1", max_retries=0)
        with tokentrail.attributes(team="search"):
            emb.get_text_embedding_batch(["refund policy", "shipping times"])
        [row] = _read(rt, "operation = 'embeddings'")
        assert rt.budgets.spent("team") == 2 * GPT4O_COST + row["cost_usd"]
        assert rt.budgets.reserved_usd("team") == 0


class _CutStreamLLM(CustomLLM):
    """Streams two chunks, then the connection fails (no usage ever arrives); or fails before
    the first chunk when the prompt says so."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="gpt-4o-mini")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        raise NotImplementedError

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            if "before" in prompt:
                raise ConnectionError("reset before the first token")
            yield CompletionResponse(text="Hello", delta="Hello")
            yield CompletionResponse(text="Hello there", delta=" there")
            raise ConnectionError("reset half way")

        return gen()


def test_a_stream_cut_after_its_first_token_is_billed_one_cut_before_is_released(budgeted: Any) -> None:
    """The lifecycle's rules, as in the LangChain integration: the provider bills a stream it
    started answering (estimated here: no usage arrived), so its reservation is settled; one
    that failed before its first token costs nothing and its reservation is released."""
    rt = budgeted(Budget(name="shop", limit_usd=5, period="month", action="block"))
    llm = _CutStreamLLM()
    with pytest.raises(ConnectionError, match="half way"):
        for _ in llm.stream_complete("tell me"):
            pass
    with pytest.raises(ConnectionError, match="before the first token"):
        for _ in llm.stream_complete("fail before"):
            pass
    assert rt.budgets.reserved_usd("shop") == 0
    cut, before = _read(rt, "operation = 'text_completion'")
    assert (cut["status"], cut["error_type"], cut["cost_status"], cut["usage_estimated"]) == ("error", "ConnectionError", "priced", True)
    assert cut["output_tokens"] == 2 and cut["input_tokens"] > 0 and cut["time_to_first_token_ms"] is not None
    assert (before["status"], before["cost_status"], before["input_tokens"], before["cost_usd"]) == ("error", "no_usage", 0, None)
    assert rt.budgets.spent("shop") == cut["cost_usd"] > 0


def test_blocking_budget_blocks_embeddings(budgeted: Any) -> None:
    budgeted(Budget(name="nano", limit_usd=Decimal("0.000000001"), period="day", action="block"))
    with openai_server() as srv:
        emb = OpenAIEmbedding(model="text-embedding-3-small", api_key="test", api_base=srv.url + "/v1", max_retries=0)
        with pytest.raises(BudgetExceeded):
            emb.get_text_embedding_batch(["a refund policy that is long enough to cost something"])
        assert srv.requests == []


def _read(rt: runtime.Tokentrail, where: str) -> list[dict[str, Any]]:
    from conftest import spans

    return spans(rt, where)


# -- leaks and errors ----------------------------------------------------------------------


def test_no_span_leaks_over_1000_calls_some_failing(mem: tuple[runtime.Tokentrail, Any]) -> None:
    rt, exporter = mem
    llm = FailingLLM(max_tokens=3)
    index = VectorStoreIndex.from_documents([Document(text="alpha beta")], embed_model=MockEmbedding(embed_dim=4))
    engine = index.as_query_engine(llm=llm)
    failed = abandoned = 0

    async def acall(i: int) -> None:
        await llm.acomplete(f"async {i}")

    for i in range(1000):
        k = i % 10
        try:
            if k == 0:
                failed += 1
                llm.complete(f"please fail {i}")
            elif k == 1:
                assert len(list(llm.stream_complete(f"stream {i}"))) == 3
            elif k == 2:  # the consumer stops reading
                gen = llm.stream_complete(f"stream {i}")
                next(gen)
                gen.close()
                abandoned += 1
            elif k == 3:  # never read, dropped
                llm.stream_complete(f"stream {i}")
                abandoned += 1
            elif k == 4:
                llm.chat([ChatMessage(role="user", content=f"chat {i}")])
            elif k == 5:
                asyncio.run(acall(i))
            elif k == 6 and i % 100 == 6:
                failed += 1
                engine.query(f"fail query {i}")  # error deep in a query engine
            else:
                llm.complete(f"ok {i}")
        except RuntimeError:
            pass
    gc.collect()
    handler = li_mod._installed.span_handler  # type: ignore[union-attr]
    assert rt.open_spans == 0
    assert handler.open_spans == {} and handler.streaming_count == 0
    assert handler.gen_frames == {}
    spans = exporter.get_finished_spans()
    model = [s for s in spans if s.attributes.get("gen_ai.operation.name") in ("chat", "text_completion")]
    assert len(model) == 1000  # chat -> complete on one MockLLM is one span (a chat span)
    assert len([s for s in model if s.attributes["gen_ai.operation.name"] == "chat"]) == 100
    errors = [s for s in model if s.status.status_code is StatusCode.ERROR]
    assert len(errors) == failed == 110
    assert all(s.attributes["error.type"] == "RuntimeError" for s in errors)
    assert len([s for s in model if s.attributes.get("tokentrail.abandoned")]) == abandoned == 200
    query_errors = [s for s in spans if s.name == "RetrieverQueryEngine.query" and s.status.status_code is StatusCode.ERROR]
    assert len(query_errors) == 10


def test_internal_errors_never_reach_the_program(tt_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rt, exporter = configure_memory(tt_home)
    handle = tokentrail.instrument_llamaindex()
    try:

        def boom(*a: Any, **k: Any) -> Any:
            raise ValueError("bug in tokentrail")

        monkeypatch.setattr(_usage, "response_usage", boom)
        assert MockLLM(max_tokens=2).complete("hi").text == "text text"
        assert rt.open_spans == 0
        assert [str(e) for e in handle.errors] == ["bug in tokentrail"]
        [span] = exporter.get_finished_spans()  # ended all the same, without usage
        assert span.name == "text_completion" and "gen_ai.usage.input_tokens" not in span.attributes
    finally:
        handle.uninstrument()
        rt.shutdown()
        testing.reset()


# -- attribution ---------------------------------------------------------------------------


def test_attribution_follows_asyncio_tasks_and_threads(mem: tuple[runtime.Tokentrail, Any]) -> None:
    rt, exporter = mem
    probe = ProbeLLM()

    async def one(user: str) -> None:
        with tokentrail.attributes(user_id=user):
            await asyncio.sleep(0)
            await probe.acomplete(user)
            await asyncio.to_thread(probe.complete, user)  # to_thread copies the context

    async def main() -> None:
        await asyncio.gather(one("u1"), one("u2"), one("u3"))

    asyncio.run(main())
    by_user: dict[str, int] = {}
    for s in exporter.get_finished_spans():
        by_user[s.attributes["user.id"]] = by_user.get(s.attributes["user.id"], 0) + 1
    assert by_user == {"u1": 2, "u2": 2, "u3": 2}


def test_propagation_context_restores_trace_and_attribution(mem: tuple[runtime.Tokentrail, Any]) -> None:
    """What llama-index-workflows does for a run in another task or process."""
    rt, exporter = mem
    probe = ProbeLLM()
    with rt.tracer.start_as_current_span("caller") as caller, tokentrail.attributes(user_id="eve"):
        carried = get_dispatcher().capture_propagation_context()

    def worker() -> None:  # a plain thread: no context inherited
        get_dispatcher().restore_propagation_context(carried)
        probe.complete("hi")

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    [span] = [s for s in exporter.get_finished_spans() if s.name.startswith("text_completion")]
    assert span.context.trace_id == caller.get_span_context().trace_id
    assert hex_parent(span) == hex_id(caller)
    assert span.attributes["user.id"] == "eve"


# -- install / undo ------------------------------------------------------------------------


def test_instrument_is_idempotent_counted_and_reversible(tt_home: Path) -> None:
    rt, exporter = configure_memory(tt_home)
    try:
        root = get_dispatcher()
        dispatcher_cls = type(root)
        original_event = dispatcher_cls.__dict__["event"]
        n_span, n_event = len(root.span_handlers), len(root.event_handlers)
        a = tokentrail.instrument_llamaindex()
        b = tokentrail.instrument_llamaindex()
        assert len(root.span_handlers) == n_span + 1 and len(root.event_handlers) == n_event + 1
        assert dispatcher_cls.__dict__["event"] is not original_event
        MockLLM(max_tokens=1).complete("x")
        b.uninstrument()
        b.uninstrument()  # undoing a handle twice is harmless
        assert li_mod.active()  # `a` still holds it
        MockLLM(max_tokens=1).complete("y")
        with a:
            pass
        assert not li_mod.active()
        assert len(root.span_handlers) == n_span and len(root.event_handlers) == n_event
        assert dispatcher_cls.__dict__["event"] is original_event
        MockLLM(max_tokens=1).complete("z")  # not recorded
        assert _names(exporter) == ["text_completion", "text_completion"]
        with tokentrail.instrument_llamaindex() as c:
            assert c.active
            MockLLM(max_tokens=1).complete("w")
        assert not c.active and len(_names(exporter)) == 3
    finally:
        rt.shutdown()
        testing.reset()


def test_uninstrument_ends_spans_in_flight(tt_home: Path) -> None:
    rt, exporter = configure_memory(tt_home)
    try:
        handle = tokentrail.instrument_llamaindex()
        gen = MockLLM(max_tokens=3).stream_complete("never read")
        assert rt.open_spans == 1
        handle.uninstrument()
        assert rt.open_spans == 0
        [span] = exporter.get_finished_spans()
        assert span.attributes["tokentrail.incomplete"] is True
        del gen
    finally:
        rt.shutdown()
        testing.reset()


def test_errors_end_spans_with_error_type(mem: tuple[runtime.Tokentrail, Any]) -> None:
    rt, exporter = mem
    index = VectorStoreIndex.from_documents([Document(text="x")], embed_model=MockEmbedding(embed_dim=4))
    with pytest.raises(RuntimeError, match="provider said no"):
        index.as_query_engine(llm=FailingLLM()).query("fail now")
    spans = {s.name: s for s in exporter.get_finished_spans()}
    for name in ("RetrieverQueryEngine.query", "CompactAndRefine.synthesize", "text_completion"):
        assert spans[name].status.status_code is StatusCode.ERROR
        assert spans[name].attributes["error.type"] == "RuntimeError"
    assert spans["retrieval VectorIndexRetriever"].status.status_code is StatusCode.UNSET
    assert rt.open_spans == 0


# -- content -------------------------------------------------------------------------------


def test_content_is_captured_only_when_configured(tt_home: Path) -> None:
    import json

    from llama_index.core.tools import FunctionTool

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    tool = FunctionTool.from_defaults(add)
    index = VectorStoreIndex.from_documents([Document(text="refunds within 30 days")], embed_model=MockEmbedding(embed_dim=4))
    for capture in (False, True):
        rt, exporter = configure_memory(tt_home, capture_content=capture)
        handle = tokentrail.instrument_llamaindex()
        try:
            ProbeLLM().complete("what is the refund window?")
            assert tool.call(a=2, b=3).content == "5"
            index.as_retriever().retrieve("refund window")
            spans = {s.name: s for s in exporter.get_finished_spans()}
            model, t, r = spans["text_completion gpt-4o-mini"], spans["execute_tool add"], spans["retrieval VectorIndexRetriever"]
            if not capture:
                for s in (model, t, r):
                    assert not [k for k in s.attributes if k.startswith(("gen_ai.input", "gen_ai.output", "gen_ai.tool.call"))]
                continue
            assert json.loads(model.attributes["gen_ai.input.messages"]) == [
                {"role": "user", "parts": [{"type": "text", "content": "what is the refund window?"}]}
            ]
            assert json.loads(model.attributes["gen_ai.output.messages"])[0]["parts"][0]["content"] == "ok"
            assert json.loads(t.attributes["gen_ai.tool.call.arguments"]) == {"a": 2, "b": 3}
            assert t.attributes["gen_ai.tool.call.result"] == "5"
            assert json.loads(r.attributes["gen_ai.input.messages"])[0]["parts"][0]["content"] == "refund window"
        finally:
            errors = handle.errors
            handle.uninstrument()
            rt.shutdown()
            testing.reset()
        assert errors == []
