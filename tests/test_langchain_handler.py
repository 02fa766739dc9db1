"""The LangChain callback handler: spans, usage, cost, attribution and errors, read back from the store."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from genai_prices import Usage as GPUsage
from genai_prices import calc_price
from langchain_core.caches import InMemoryCache
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langchain_fakes import UsageChatModel
from opentelemetry.trace import SpanKind, StatusCode
from otel_helpers import configure_memory, parent_id, span_id

import tokentrail
from tokentrail import runtime, testing, tokens
from tokentrail import semconv as sc
from tokentrail.instrumentation.langchain import TokentrailCallbackHandler

PROMPT = ChatPromptTemplate.from_messages([("system", "You are terse."), ("user", "Say {word}")])




def _by_name(spans: Any) -> dict[str, Any]:
    return {s.name: s for s in spans}


def test_chain_path_exact_tokens_cost_and_parents(tt: runtime.Tokentrail, read_spans: Any) -> None:
    model = UsageChatModel()
    chain = PROMPT | model | StrOutputParser()
    handler = tokentrail.langchain_handler(user_id="alice")
    assert isinstance(handler, TokentrailCallbackHandler)

    assert chain.invoke({"word": "hi"}, config={"callbacks": [handler]}) == "Hello there, friend"
    assert tt.open_spans == 0 and handler.open_runs == 0

    rows = {r["name"]: r for r in read_spans()}
    assert set(rows) == {"RunnableSequence", "ChatPromptTemplate", "chat gpt-4o", "StrOutputParser"}
    root, llm = rows["RunnableSequence"], rows["chat gpt-4o"]
    # parents exactly as the runs nest, one trace
    assert root["parent_span_id"] == ""
    for name in ("ChatPromptTemplate", "chat gpt-4o", "StrOutputParser"):
        assert rows[name]["parent_span_id"] == root["span_id"]
        assert rows[name]["trace_id"] == root["trace_id"]
    assert (llm["operation"], llm["framework"], llm["provider"]) == ("chat", "langchain", "openai")
    assert (llm["request_model"], llm["response_model"]) == ("gpt-4o", "gpt-4o-2024-08-06")
    assert (llm["input_tokens"], llm["output_tokens"], llm["cache_read_tokens"]) == (1000, 100, 500)
    assert (llm["cache_write_tokens"], llm["reasoning_tokens"], llm["usage_estimated"]) == (0, 0, False)
    expected = calc_price(
        GPUsage(input_tokens=1000, cache_read_tokens=500, output_tokens=100),
        model_ref="gpt-4o-2024-08-06",
        provider_id="openai",
        genai_request_timestamp=llm["timestamp"],
    )
    assert llm["cost_usd"] == expected.total_price == Decimal("0.002875")
    assert llm["input_cost_usd"] == expected.input_price
    assert llm["output_cost_usd"] == expected.output_price
    assert llm["cost_status"] == "priced"
    assert llm["status"] == "ok" and llm["error_type"] == ""
    assert llm["time_to_first_token_ms"] is None  # not streamed
    # chain spans: attribution, no usage, no cost
    assert (root["operation"], root["project"], root["user_id"]) == ("chain", "test", "alice")
    assert root["cost_usd"] is None and root["input_tokens"] == 0
    assert all(r["user_id"] == "alice" and r["project"] == "test" for r in rows.values())


def test_unknown_model_is_unpriced_and_errors_end_spans(tt: runtime.Tokentrail, read_spans: Any) -> None:
    unknown = UsageChatModel(model_name="acme-llm-9", response_model=None, provider="acme")
    assert (PROMPT | unknown).invoke({"word": "x"}, config={"callbacks": [tokentrail.langchain_handler()]})

    broken = UsageChatModel(model_name="gpt-4o-mini", fail=1)
    chain = (PROMPT | broken | StrOutputParser()).with_config(run_name="broken_chain")
    with pytest.raises(ConnectionError):
        chain.invoke({"word": "x"}, config={"callbacks": [tokentrail.langchain_handler()]})
    assert tt.open_spans == 0

    rows = {r["name"]: r for r in read_spans()}
    u = rows["chat acme-llm-9"]
    assert (u["provider"], u["input_tokens"], u["output_tokens"]) == ("unknown", 1000, 100)
    assert u["cost_usd"] is None and u["input_cost_usd"] is None and u["cost_status"] == "unpriced"

    err = rows["chat gpt-4o-mini"]
    assert (err["status"], err["error_type"]) == ("error", "ConnectionError")
    # failed before the provider answered: nothing billed, nothing estimated
    assert err["cost_status"] == "no_usage" and err["cost_usd"] is None and err["input_tokens"] == 0
    top = rows["broken_chain"]
    assert (top["status"], top["error_type"]) == ("error", "ConnectionError")
    assert err["parent_span_id"] == top["span_id"]
    assert "StrOutputParser" not in rows  # never ran


def test_span_kinds_and_lean_chain_attributes(mem: Any) -> None:
    rt, exporter = mem
    (PROMPT | UsageChatModel() | StrOutputParser()).invoke({"word": "x"}, config={"callbacks": [tokentrail.langchain_handler()]})
    spans = _by_name(exporter.get_finished_spans())
    assert spans["chat gpt-4o"].kind is SpanKind.CLIENT
    assert spans["RunnableSequence"].kind is SpanKind.INTERNAL
    # a chain span carries operation, framework and attribution only
    assert set(spans["RunnableSequence"].attributes) == {sc.GEN_AI_OPERATION_NAME, sc.FRAMEWORK, sc.PROJECT}
    assert sc.GEN_AI_INPUT_MESSAGES not in spans["chat gpt-4o"].attributes  # capture_content is off


def test_attribution_precedence(tt_home: Path) -> None:
    rt, exporter = configure_memory(tt_home, project="shop", environment="prod")
    try:
        model = UsageChatModel()
        chain = (PROMPT | model).with_config(run_name="outer")
        handler = tokentrail.langchain_handler(team="handler-team", feature="handler-feature", user_id="handler-user")
        with tokentrail.attributes(team="ctx-team", feature="ctx-feature", session_id="s-1", tags=["ctx"]):
            chain.invoke(
                {"word": "x"},
                config={"callbacks": [handler], "metadata": {"user_id": "meta-user"}, "tags": ["beta"]},
            )
            # a child run's own metadata wins over its parent's
            inner = RunnableLambda(lambda x, config: model.invoke("hi", config={**config, "metadata": {"feature": "inner"}}))
            inner.with_config(run_name="lambda").invoke("x", config={"callbacks": [handler]})
        spans = _by_name(exporter.get_finished_spans())
        outer = spans["outer"].attributes
        assert outer[sc.PROJECT] == "shop" and outer[sc.ENVIRONMENT] == "prod"  # configure defaults
        assert outer[sc.SESSION_ID] == "s-1" and outer[sc.GEN_AI_CONVERSATION_ID] == "s-1"  # attributes()
        assert outer[sc.TEAM] == "handler-team" and outer[sc.FEATURE] == "handler-feature"  # handler > attributes()
        assert outer[sc.USER_ID] == "meta-user"  # run metadata > handler
        assert list(outer[sc.TAGS]) == ["ctx", "beta"]
        llm = [s for s in exporter.get_finished_spans() if s.name == "chat gpt-4o"]
        first = llm[0].attributes
        assert first[sc.USER_ID] == "meta-user" and first[sc.TEAM] == "handler-team"  # inherited from the parent run
        second = llm[1].attributes
        assert second[sc.FEATURE] == "inner" and second[sc.USER_ID] == "handler-user"
        assert parent_id(llm[1]) == span_id(spans["lambda"])
    finally:
        rt.shutdown()
        testing.reset()


def test_n_generations_cache_hits_and_estimates(mem: Any) -> None:
    rt, exporter = mem
    cached = UsageChatModel(cache=InMemoryCache())
    handler = tokentrail.langchain_handler()
    first = cached.invoke("same question", config={"callbacks": [handler]})
    second = cached.invoke("same question", config={"callbacks": [handler]})
    assert first.content == second.content and cached._calls == 1  # the second came from the cache
    paid, hit = [s.attributes for s in exporter.get_finished_spans()]
    assert paid[sc.COST_USD] == "0.002875000" and sc.CACHE_HIT not in paid
    assert hit[sc.CACHE_HIT] is True
    assert (hit[sc.COST_USD], hit[sc.COST_STATUS]) == ("0.000000000", "priced")
    assert hit[sc.GEN_AI_USAGE_INPUT_TOKENS] == 0 and hit[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 0
    assert hit["tokentrail.cache_hit.saved_usd"] == "0.002875000"

    # no usage from the provider: counted with the offline tokenizer and flagged
    exporter.clear()
    fake = FakeListChatModel(responses=["four word answer here"])
    fake.invoke([("system", "Be brief."), ("user", "hello world")], config={"callbacks": [handler]})
    (span,) = exporter.get_finished_spans()
    a = span.attributes
    assert a[sc.USAGE_ESTIMATED] is True
    assert a[sc.GEN_AI_USAGE_INPUT_TOKENS] == tokens.count_messages([("system", "Be brief."), ("user", "hello world")])
    assert a[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == tokens.count_tokens("four word answer here")
    assert a[sc.COST_STATUS] == "unpriced"  # a fake model has no price

    # text completion LLMs
    exporter.clear()
    FakeListLLM(responses=["ok"]).invoke("ping", config={"callbacks": [handler]})
    (span,) = exporter.get_finished_spans()
    assert span.attributes[sc.GEN_AI_OPERATION_NAME] == "text_completion"
    assert span.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == tokens.count_tokens("ping")
    assert handler.open_runs == 0 and rt.open_spans == 0


def test_retries_tools_retrievers_and_capture_content(tt_home: Path) -> None:
    rt, exporter = configure_memory(tt_home, capture_content=True)
    try:
        handler = tokentrail.langchain_handler()
        flaky = UsageChatModel(fail=2)
        out = flaky.with_retry(stop_after_attempt=3, wait_exponential_jitter=False).invoke("hi", config={"callbacks": [handler]})
        assert out.content == "Hello there, friend"
        spans = exporter.get_finished_spans()
        attempts = [s for s in spans if s.name == "chat gpt-4o"]
        assert [s.status.status_code for s in attempts] == [StatusCode.ERROR, StatusCode.ERROR, StatusCode.UNSET]
        assert [s.attributes.get(sc.COST_USD) for s in attempts] == [None, None, "0.002875000"]
        retry = next(s for s in spans if s.name == "UsageChatModel")  # the RunnableRetry run
        assert all(parent_id(s) == span_id(retry) for s in attempts)
        ok = attempts[-1].attributes
        assert json.loads(ok[sc.GEN_AI_INPUT_MESSAGES]) == [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]
        assert json.loads(ok[sc.GEN_AI_OUTPUT_MESSAGES])[0]["parts"][0]["content"] == "Hello there, friend"

        @tool
        def lookup(city: str) -> str:
            """Weather in a city."""
            return f"sunny in {city}"

        exporter.clear()
        assert lookup.invoke({"city": "Oslo"}, config={"callbacks": [handler]}) == "sunny in Oslo"
        (t,) = exporter.get_finished_spans()
        assert t.name == "execute_tool lookup" and t.kind is SpanKind.INTERNAL
        assert t.attributes[sc.GEN_AI_TOOL_NAME] == "lookup"
        assert t.attributes["gen_ai.tool.call.result"] == "sunny in Oslo"

        from langchain_core.documents import Document
        from langchain_core.retrievers import BaseRetriever

        class Shelf(BaseRetriever):
            def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
                return [Document(page_content=query), Document(page_content="b")]

        exporter.clear()
        assert len(Shelf().invoke("q", config={"callbacks": [handler]})) == 2
        (r,) = exporter.get_finished_spans()
        assert r.name == "retrieval Shelf" and r.attributes["tokentrail.retrieval.documents"] == 2
        assert handler.open_runs == 0
    finally:
        rt.shutdown()
        testing.reset()


def test_langgraph_graph_and_nodes(mem: Any) -> None:
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    rt, exporter = mem
    model = UsageChatModel()

    class State(TypedDict):
        text: str

    def research_agent(state: State) -> State:
        return {"text": str(model.invoke(state["text"]).content)}

    def format_answer(state: State) -> State:
        return {"text": state["text"].upper()}

    g = StateGraph(State)
    g.add_node("research_agent", research_agent)
    g.add_node("format_answer", format_answer)
    g.add_edge(START, "research_agent")
    g.add_edge("research_agent", "format_answer")
    g.add_edge("format_answer", END)
    app = g.compile(name="support_flow")
    handler = tokentrail.langchain_handler()
    assert app.invoke({"text": "hi"}, config={"callbacks": [handler], "configurable": {"thread_id": "t-9"}})["text"] == "HELLO THERE, FRIEND"
    spans = _by_name(exporter.get_finished_spans())
    graph = spans["invoke_workflow support_flow"]
    agent = spans["invoke_agent research_agent"]
    assert graph.attributes[sc.GEN_AI_OPERATION_NAME] == "invoke_workflow"
    assert agent.attributes[sc.GEN_AI_OPERATION_NAME] == "invoke_agent"
    assert agent.attributes[sc.GEN_AI_AGENT_NAME] == "research_agent"
    assert spans["format_answer"].attributes[sc.GEN_AI_OPERATION_NAME] == "chain"
    assert parent_id(agent) == span_id(graph)
    assert parent_id(spans["chat gpt-4o"]) == span_id(agent)
    assert handler.open_runs == 0 and rt.open_spans == 0


def test_an_internal_error_never_breaks_the_users_chain(mem: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from tokentrail.instrumentation.langchain import models as handler_module

    rt, exporter = mem

    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("a bug in tokentrail")

    monkeypatch.setattr(handler_module, "infer_provider", broken)
    monkeypatch.setenv("TOKENTRAIL_RAISE_INTERNAL_ERRORS", "0")  # as outside pytest
    handler = tokentrail.langchain_handler()
    chain = PROMPT | UsageChatModel() | StrOutputParser()
    # the handler has raise_error=True (so BudgetExceeded reaches the caller): nothing else may
    assert chain.invoke({"word": "x"}, config={"callbacks": [handler]}) == "Hello there, friend"
    assert "tokentrail internal error" in caplog.text and "a bug in tokentrail" in caplog.text
    assert rt.open_spans == 0
    # under pytest the same bug is raised, so tests see it (the model run that failed to start
    # then ends with its root: no grace period for it to end by itself)
    monkeypatch.delenv("TOKENTRAIL_RAISE_INTERNAL_ERRORS")
    handler.orphan_grace_s = 0
    with pytest.raises(RuntimeError, match="a bug in tokentrail"):
        chain.invoke({"word": "x"}, config={"callbacks": [handler]})
    assert handler.open_runs == 0 and rt.open_spans == 0
