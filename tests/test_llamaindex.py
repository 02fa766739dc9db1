"""LlamaIndex instrumentation on real pipelines: a VectorStoreIndex, a query engine, a chat
engine, an agent and a workflow, over llama-index-llms-openai / llama-index-embeddings-openai
talking to a loopback server with real OpenAI bodies (and Anthropic's via the SDK), read back
from the store: exact tokens, Decimal dollars, names, parents."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from genai_prices import Usage as GPUsage
from genai_prices import calc_price
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from llama_index.core.tools import FunctionTool
from llama_index.core.workflow import StartEvent, StopEvent, Workflow, step
from llama_index.embeddings.openai import OpenAIEmbedding
from llama_index.llms.openai import OpenAI
from llamaindex_mocks import Anthropic, ProbeLLM, openai_tool_call_body
from mock_providers import Reply, anthropic_server, openai_server

import tokentrail
from tokentrail import runtime, tokens
from tokentrail.instrumentation.llamaindex import LlamaIndexInstrumentation

DOCS = [
    Document(text="Refunds are available within 30 days of purchase for unused items."),
    Document(text="Express orders placed before 14:00 UTC ship the same day."),
    Document(text="Gift cards cannot be refunded or exchanged for cash."),
]
GPT4O_COST = Decimal("0.002875")  # 1000 in (500 cached) + 100 out at $2.50 / $1.25 / $10 per M


@pytest.fixture
def li(tt: runtime.Tokentrail) -> Iterator[LlamaIndexInstrumentation]:
    handle = tokentrail.instrument_llamaindex()
    yield handle
    errors = handle.errors
    # before uninstrument(), which would end (and so hide) any span left open
    open_now, handler = tt.open_spans, handle.span_handler
    assert handler is not None
    streams = handler.streaming_count
    handle.uninstrument()
    assert errors == [], errors
    assert (open_now, streams) == (0, 0)


@pytest.fixture
def srv() -> Iterator[Any]:
    with openai_server(prompt_tokens=1000, cached_tokens=500, completion_tokens=100, reasoning_tokens=40, embedding_tokens=8) as s:
        yield s


def _llm(srv: Any, **kw: Any) -> OpenAI:
    return OpenAI(model="gpt-4o", api_key="test", api_base=srv.url + "/v1", max_retries=0, **kw)


def _embed(srv: Any) -> OpenAIEmbedding:
    return OpenAIEmbedding(model="text-embedding-3-small", api_key="test", api_base=srv.url + "/v1", max_retries=0)


def _price(row: dict[str, Any], model: str, **usage: int) -> Decimal:
    return calc_price(GPUsage(**usage), model_ref=model, provider_id="openai", genai_request_timestamp=row["timestamp"]).total_price


def _children(rows: list[dict[str, Any]], parent: dict[str, Any]) -> list[str]:
    return sorted(r["name"] for r in rows if r["parent_span_id"] == parent["span_id"])


def test_query_engine_exact_usage_cost_and_parents(li: Any, srv: Any, read_spans: Any) -> None:
    embed = _embed(srv)
    index = VectorStoreIndex.from_documents(DOCS, embed_model=embed)
    engine = index.as_query_engine(llm=_llm(srv), similarity_top_k=2)
    with tokentrail.attributes(user_id="alice", feature="doc-search", team="search", tags=["beta"]):
        answer = engine.query("How long do refunds take?")
    assert str(answer) == "Hello! How can I help?"

    rows = read_spans("framework = 'llamaindex'")
    query = [r for r in rows if r["name"] == "RetrieverQueryEngine.query"]
    assert len(query) == 1
    q = query[0]
    trace_rows = [r for r in rows if r["trace_id"] == q["trace_id"]]
    by_name = {r["name"]: r for r in trace_rows}
    # one span per component, lean: no _query/_retrieve/get_response/splitter/predict spans
    assert sorted(by_name) == sorted(
        [
            "RetrieverQueryEngine.query",
            "retrieval VectorIndexRetriever",
            "embeddings text-embedding-3-small",
            "CompactAndRefine.synthesize",
            "chat gpt-4o",
        ]
    )
    assert len(trace_rows) == 5
    assert q["parent_span_id"] == ""
    assert _children(trace_rows, q) == ["CompactAndRefine.synthesize", "retrieval VectorIndexRetriever"]
    assert _children(trace_rows, by_name["retrieval VectorIndexRetriever"]) == ["embeddings text-embedding-3-small"]
    assert _children(trace_rows, by_name["CompactAndRefine.synthesize"]) == ["chat gpt-4o"]

    llm = by_name["chat gpt-4o"]
    assert (llm["operation"], llm["provider"], llm["request_model"], llm["response_model"]) == ("chat", "openai", "gpt-4o", "gpt-4o")
    assert (llm["input_tokens"], llm["output_tokens"], llm["cache_read_tokens"], llm["reasoning_tokens"]) == (1000, 100, 500, 40)
    assert (llm["cache_write_tokens"], llm["usage_estimated"], llm["cost_status"], llm["status"]) == (0, False, "priced", "ok")
    expected = _price(llm, "gpt-4o", input_tokens=1000, cache_read_tokens=500, output_tokens=100)
    assert llm["cost_usd"] == expected == GPT4O_COST
    assert llm["input_cost_usd"] + llm["output_cost_usd"] == llm["cost_usd"]
    assert llm["output_cost_usd"] == Decimal("0.001")
    assert llm["time_to_first_token_ms"] is None  # not streamed

    # embeddings: llama-index-embeddings-openai drops the API's usage, so tokens are counted
    emb = by_name["embeddings text-embedding-3-small"]
    n = tokens.count_tokens("How long do refunds take?", "text-embedding-3-small")
    assert (emb["input_tokens"], emb["output_tokens"], emb["usage_estimated"]) == (n, 0, True)
    assert (emb["provider"], emb["request_model"], emb["cost_status"]) == ("openai", "text-embedding-3-small", "priced")
    assert emb["cost_usd"] == _price(emb, "text-embedding-3-small", input_tokens=n) == Decimal("0.00000002") * n

    # attribution on every span of the call, from tokentrail.attributes()
    for r in trace_rows:
        assert (r["user_id"], r["feature"], r["team"], r["project"], r["tags"]) == ("alice", "doc-search", "search", "test", ["beta"])
        assert r["framework"] == "llamaindex"
    assert by_name["retrieval VectorIndexRetriever"]["attributes"]["tokentrail.retrieval.documents"] == "2"

    # the index build embedded the documents before the block: counted, not attributed
    build = [r for r in rows if r["trace_id"] != q["trace_id"]]
    assert [r["name"] for r in build] == ["embeddings text-embedding-3-small"]
    doc_tokens = sum(tokens.count_tokens(d.get_content(metadata_mode="embed"), "text-embedding-3-small") for d in DOCS)
    assert build[0]["input_tokens"] == doc_tokens and build[0]["user_id"] == ""
    # the provider saw the requests the spans describe
    assert [r.path for r in srv.requests].count("/v1/chat/completions") == 1


def test_stream_chat_with_include_usage(li: Any, srv: Any, read_spans: Any) -> None:
    llm = _llm(srv, additional_kwargs={"stream_options": {"include_usage": True}})
    with tokentrail.attributes(session_id="conv-1"):
        chunks = list(llm.stream_chat([ChatMessage(role="user", content="hi")]))
    assert chunks[-1].message.content == "Hello! How can I help?"
    [row] = read_spans()
    assert (row["name"], row["status"], row["session_id"]) == ("chat gpt-4o", "ok", "conv-1")
    assert row["attributes"]["gen_ai.conversation.id"] == "conv-1"
    assert (row["input_tokens"], row["output_tokens"], row["cache_read_tokens"], row["reasoning_tokens"]) == (1000, 100, 500, 40)
    assert row["usage_estimated"] is False
    assert row["cost_usd"] == _price(row, "gpt-4o", input_tokens=1000, cache_read_tokens=500, output_tokens=100) == GPT4O_COST
    assert row["time_to_first_token_ms"] is not None
    assert 0 <= row["time_to_first_token_ms"] <= row["duration_ms"]


def test_stream_without_usage_is_estimated_not_free(li: Any, srv: Any, read_spans: Any) -> None:
    llm = _llm(srv)  # no include_usage: OpenAI sends no usage in the stream
    messages = [ChatMessage(role="user", content="Tell me about refunds")]
    text = "".join(c.delta or "" for c in llm.stream_chat(messages))
    [row] = read_spans()
    assert row["usage_estimated"] is True
    assert row["input_tokens"] == tokens.count_messages(messages, "gpt-4o")
    assert row["output_tokens"] == tokens.count_tokens(text, "gpt-4o") > 0
    expected = _price(row, "gpt-4o", input_tokens=row["input_tokens"], output_tokens=row["output_tokens"])
    assert row["cost_usd"] == expected > 0


def test_streaming_query_engine_continues_the_query_trace(li: Any, srv: Any, read_spans: Any) -> None:
    index = VectorStoreIndex.from_documents(DOCS, embed_model=_embed(srv))
    llm = _llm(srv, additional_kwargs={"stream_options": {"include_usage": True}})
    engine = index.as_query_engine(llm=llm, streaming=True)
    with tokentrail.attributes(user_id="bob"):
        response = engine.query("Do gift cards get refunds?")
    # consumed after the query span ended and outside the attributes block
    assert "".join(response.response_gen) == "Hello! How can I help?"
    rows = read_spans("framework = 'llamaindex'")
    by_name = {r["name"]: r for r in rows}
    llm_row, synth = by_name["chat gpt-4o"], by_name["CompactAndRefine.synthesize"]
    assert llm_row["parent_span_id"] == synth["span_id"] and llm_row["trace_id"] == synth["trace_id"]
    assert llm_row["user_id"] == "bob"  # the query's attribution carried to the lazy call
    assert (llm_row["input_tokens"], llm_row["output_tokens"], llm_row["cost_usd"]) == (1000, 100, GPT4O_COST)
    assert llm_row["time_to_first_token_ms"] is not None


def test_chat_engine_turns_and_stream(li: Any, srv: Any, read_spans: Any) -> None:
    index = VectorStoreIndex.from_documents(DOCS, embed_model=_embed(srv))
    llm = _llm(srv, additional_kwargs={"stream_options": {"include_usage": True}})
    engine = index.as_chat_engine(chat_mode="condense_plus_context", llm=llm)
    with tokentrail.attributes(user_id="carol", session_id="s-9"):
        engine.chat("What is the refund window?")
        engine.chat("And for gift cards?")
        streamed = engine.stream_chat("Thanks, and express shipping?")
        assert "".join(streamed.response_gen) == "Hello! How can I help?"
    rows = read_spans("framework = 'llamaindex' AND user_id = 'carol'")
    roots = [r for r in rows if r["parent_span_id"] == ""]
    assert sorted(r["name"] for r in roots) == [
        "CondensePlusContextChatEngine.chat",
        "CondensePlusContextChatEngine.chat",
        "CondensePlusContextChatEngine.stream_chat",
    ]
    model_rows = [r for r in rows if r["operation"] in ("chat", "text_completion")]
    # turn 1: answer; turns 2 and 3: condense the question (a completion) then answer
    assert len(model_rows) == 5
    for r in model_rows:
        assert (r["input_tokens"], r["output_tokens"], r["cache_read_tokens"], r["usage_estimated"]) == (1000, 100, 500, False)
        assert r["cost_usd"] == GPT4O_COST and r["session_id"] == "s-9"
        assert r["trace_id"] in {root["trace_id"] for root in roots}
    # the streamed answer was written to history by a LlamaIndex thread: same trace, attributed
    stream_root = next(r for r in roots if r["name"].endswith("stream_chat"))
    in_stream = [r for r in model_rows if r["trace_id"] == stream_root["trace_id"]]
    assert len(in_stream) == 2 and any(r["time_to_first_token_ms"] is not None for r in in_stream)
    assert len([r for r in srv.requests if r.path.endswith("/chat/completions")]) == 5


def test_anthropic_shapes_cache_tokens_chat_and_stream(li: Any, read_spans: Any) -> None:
    with anthropic_server(input_tokens=100, output_tokens=20, cache_read_input_tokens=1000, cache_creation_input_tokens=200) as a:
        llm = Anthropic(model="claude-3-5-haiku-20241022", base_url=a.url)
        msgs = [ChatMessage(role="user", content="hi")]
        assert llm.chat(msgs).message.content == "Hello! How can I help?"
        assert "".join(c.delta or "" for c in llm.stream_chat(msgs)) == "Hello! How can I help?"
        llm.complete("hi")  # complete -> chat on one LLM: one span, counted once
    rows = read_spans()
    assert [r["name"] for r in rows] == ["chat claude-3-5-haiku-20241022"] * 2 + ["text_completion claude-3-5-haiku-20241022"]
    for row in rows:
        # Anthropic's input_tokens excludes cache reads and writes: added back, never twice
        assert (row["input_tokens"], row["cache_read_tokens"], row["cache_write_tokens"], row["output_tokens"]) == (1300, 1000, 200, 20)
        assert (row["provider"], row["usage_estimated"], row["cost_status"]) == ("anthropic", False, "priced")
        expected = calc_price(
            GPUsage(input_tokens=1300, cache_read_tokens=1000, cache_write_tokens=200, output_tokens=20),
            model_ref="claude-3-5-haiku-20241022",
            provider_id="anthropic",
            genai_request_timestamp=row["timestamp"],
        ).total_price
        # $0.80/M in, $0.08/M cache read, $1.00/M cache write, $4/M out
        assert row["cost_usd"] == expected == Decimal("0.000440")
    assert rows[1]["time_to_first_token_ms"] is not None


def test_mock_models_are_estimated_and_unpriced(li: Any, read_spans: Any) -> None:
    index = VectorStoreIndex.from_documents(DOCS, embed_model=MockEmbedding(embed_dim=8))
    engine = index.as_query_engine(llm=MockLLM(max_tokens=6), similarity_top_k=1)
    engine.query("refunds?")
    rows = read_spans("framework = 'llamaindex'")
    model = [r for r in rows if r["operation"] == "text_completion"]
    assert len(model) == 1
    m = model[0]
    # MockLLM sends no usage: counted offline, flagged, unknown provider, NULL cost (never $0)
    assert (m["name"], m["provider"], m["request_model"]) == ("text_completion", "unknown", "")
    assert m["usage_estimated"] is True and m["output_tokens"] == tokens.count_tokens("text text text text text text")
    assert m["input_tokens"] > 0 and m["cost_usd"] is None and m["cost_status"] == "unpriced"
    assert m["attributes"]["gen_ai.request.max_tokens"] == "6"
    emb = [r for r in rows if r["operation"] == "embeddings"]
    assert all(r["usage_estimated"] and r["cost_usd"] is None and r["input_tokens"] > 0 for r in emb)


def test_agent_tool_calls_and_workflow_spans(li: Any, srv: Any, read_spans: Any) -> None:
    srv.push(Reply(body=openai_tool_call_body("add", '{"a": 2, "b": 3}')))
    calls: list[tuple[int, int]] = []

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        calls.append((a, b))
        return a + b

    llm = OpenAI(model="gpt-4o-mini", api_key="test", api_base=srv.url + "/v1", max_retries=0)
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(add)], llm=llm, name="calculator", streaming=False)

    async def main() -> Any:
        with tokentrail.attributes(user_id="dmitri"):
            return await agent.run("what is 2 + 3?")

    result = asyncio.run(main())
    assert calls == [(2, 3)] and "Hello" in str(result)
    rows = read_spans("framework = 'llamaindex'")
    [root] = [r for r in rows if r["parent_span_id"] == ""]
    assert (root["name"], root["operation"]) == ("invoke_agent calculator", "invoke_agent")
    assert root["attributes"]["gen_ai.agent.name"] == "calculator"
    assert {r["trace_id"] for r in rows} == {root["trace_id"]}
    assert {r["user_id"] for r in rows} == {"dmitri"}  # through the workflow's asyncio task
    by_id = {r["span_id"]: r for r in rows}
    [tool] = [r for r in rows if r["operation"] == "execute_tool"]
    assert (tool["name"], tool["attributes"]["gen_ai.tool.name"], tool["status"]) == ("execute_tool add", "add", "ok")
    assert by_id[tool["parent_span_id"]]["name"] == "BaseWorkflowAgent.call_tool"
    models = [r for r in rows if r["operation"] == "chat"]
    assert [(r["input_tokens"], r["output_tokens"]) for r in models] == [(80, 12), (1000, 100)]
    for r in models:
        assert by_id[r["parent_span_id"]]["name"] == "BaseWorkflowAgent.run_agent_step"
        assert by_id[by_id[r["parent_span_id"]]["parent_span_id"]] is root or by_id[r["parent_span_id"]]["parent_span_id"] == root["span_id"]
    assert models[0]["cost_usd"] == _price(models[0], "gpt-4o-mini", input_tokens=80, output_tokens=12)
    assert models[1]["cost_usd"] == _price(models[1], "gpt-4o-mini", input_tokens=1000, cache_read_tokens=500, output_tokens=100)


def test_failing_tool_is_an_error_span(li: Any, read_spans: Any) -> None:
    from llama_index.core.llms.mock import MockFunctionCallingLLM

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    # MockFunctionCallingLLM calls the tool without arguments: a TypeError inside the tool
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(add)], llm=MockFunctionCallingLLM())

    async def main() -> Any:
        return await agent.run("hi")

    asyncio.run(main())
    rows = read_spans("framework = 'llamaindex'")
    [tool] = [r for r in rows if r["operation"] == "execute_tool"]
    assert (tool["status"], tool["error_type"]) == ("error", "TypeError")
    assert {r["status"] for r in rows if r["operation"] != "execute_tool"} == {"ok"}


def test_workflow_step_and_model_call(li: Any, read_spans: Any) -> None:
    probe = ProbeLLM()

    class Answer(Workflow):
        @step
        async def answer(self, ev: StartEvent) -> StopEvent:
            r = await probe.acomplete(ev.question)
            return StopEvent(result=r.text)

    async def main() -> Any:
        return await Answer(timeout=10).run(question="hi")

    assert asyncio.run(main()) == "ok"
    rows = read_spans("framework = 'llamaindex'")
    by_name = {r["name"]: r for r in rows}
    assert sorted(by_name) == ["Answer.answer", "invoke_workflow Answer", "text_completion gpt-4o-mini"]
    wf, st, m = by_name["invoke_workflow Answer"], by_name["Answer.answer"], by_name["text_completion gpt-4o-mini"]
    assert (wf["operation"], st["operation"]) == ("invoke_workflow", "chain")
    assert st["parent_span_id"] == wf["span_id"] and m["parent_span_id"] == st["span_id"]
    assert (m["input_tokens"], m["output_tokens"], m["response_model"]) == (30, 5, "gpt-4o-mini-2024-07-18")


def test_spans_nest_in_the_callers_trace_and_provider_spans_nest_under_the_model(li: Any, tt: runtime.Tokentrail, read_spans: Any) -> None:
    probe = ProbeLLM()
    with tt.tracer.start_as_current_span("http request") as outer:
        probe.complete("hi")
    rows = {r["name"]: r for r in read_spans()}
    model = rows["text_completion gpt-4o-mini"]
    assert model["trace_id"] == format(outer.get_span_context().trace_id, "032x")
    assert model["parent_span_id"] == format(outer.get_span_context().span_id, "016x")
    # while the provider ran, the model span was the current OTel span
    [current] = probe.seen
    assert format(current.get_span_context().span_id, "016x") == model["span_id"]


def test_structured_predict_and_wrapper_llms_bill_once(li: Any, srv: Any, read_spans: Any) -> None:
    from llama_index.core.prompts import PromptTemplate
    from mock_providers import openai_chat_completion
    from pydantic import BaseModel

    class Refund(BaseModel):
        days: int
        eligible: bool

    llm = OpenAI(model="gpt-4o-mini", api_key="test", api_base=srv.url + "/v1", max_retries=0)
    srv.push(Reply(body=openai_chat_completion(model="gpt-4o-mini-2024-07-18", content='{"days": 30, "eligible": true}', prompt_tokens=40, completion_tokens=9)))
    srv.push(Reply(body=openai_chat_completion(model="gpt-4o-mini-2024-07-18", content='{"days": 14, "eligible": false}', prompt_tokens=41, completion_tokens=9)))
    assert llm.structured_predict(Refund, PromptTemplate("refund policy for {item}"), item="shoes") == Refund(days=30, eligible=True)
    # StructuredLLM wraps the OpenAI LLM: the wrapper is a chain, the inner call is billed once
    assert llm.as_structured_llm(Refund).complete("refund?").raw == Refund(days=14, eligible=False)
    rows = read_spans()
    model = [r for r in rows if r["operation"] in ("chat", "text_completion")]
    assert [(r["name"], r["input_tokens"], r["output_tokens"], r["usage_estimated"]) for r in model] == [
        ("chat gpt-4o-mini", 40, 9, False),
        ("chat gpt-4o-mini", 41, 9, False),
    ]
    [wrapper] = [r for r in rows if r["operation"] == "chain"]
    assert (wrapper["name"], wrapper["cost_usd"], wrapper["input_tokens"]) == ("StructuredLLM.complete", None, 0)
    assert model[1]["parent_span_id"] == wrapper["span_id"] and model[0]["parent_span_id"] == ""
