"""instrument_langchain(): global, idempotent, reversible, never doubled; embeddings spans; budgets."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_fakes import UsageChatModel
from opentelemetry.trace import SpanKind, StatusCode
from otel_helpers import parent_id, span_id

import tokentrail
from tokentrail import semconv as sc
from tokentrail import tokens
from tokentrail.instrumentation.langchain import TokentrailCallbackHandler, is_instrumented

PROMPT = ChatPromptTemplate.from_messages([("user", "Say {word}")])


@pytest.fixture(autouse=True)
def _every_test_undoes_what_it_did() -> Iterator[None]:
    yield
    assert not is_instrumented()


def _names(exporter: Any) -> list[str]:
    return sorted(s.name for s in exporter.get_finished_spans())


def test_global_idempotent_reversible(mem: Any) -> None:
    rt, exporter = mem
    chain = PROMPT | UsageChatModel() | StrOutputParser()
    chain.invoke({"word": "x"})
    assert exporter.get_finished_spans() == ()  # not instrumented yet

    first = tokentrail.instrument_langchain()
    second = tokentrail.instrument_langchain()  # harmless: still one span per run
    chain.invoke({"word": "x"})
    assert _names(exporter) == ["ChatPromptTemplate", "RunnableSequence", "StrOutputParser", "chat gpt-4o"]

    # a thread started now, and one started before, are instrumented too
    exporter.clear()
    t = threading.Thread(target=lambda: chain.invoke({"word": "t"}))
    t.start()
    t.join()
    assert len(exporter.get_finished_spans()) == 4

    first.uninstrument()
    first.uninstrument()  # idempotent per handle
    exporter.clear()
    chain.invoke({"word": "x"})
    assert len(exporter.get_finished_spans()) == 4  # `second` still holds
    second.undo()
    exporter.clear()
    chain.invoke({"word": "x"})
    assert exporter.get_finished_spans() == ()
    assert not is_instrumented()

    with tokentrail.instrument_langchain() as handle:
        assert handle.active and isinstance(handle.handler, TokentrailCallbackHandler)
        chain.invoke({"word": "x"})
    assert not handle.active
    chain.invoke({"word": "x"})
    assert len(exporter.get_finished_spans()) == 4
    assert rt.open_spans == 0


def test_explicit_handler_is_not_doubled(mem: Any) -> None:
    rt, exporter = mem
    model = UsageChatModel()
    chain = PROMPT | model | StrOutputParser()
    with tokentrail.instrument_langchain():
        chain.invoke({"word": "x"}, config={"callbacks": [tokentrail.langchain_handler(user_id="explicit")]})
        spans = exporter.get_finished_spans()
        assert _names(exporter) == ["ChatPromptTemplate", "RunnableSequence", "StrOutputParser", "chat gpt-4o"]
        assert all(s.attributes[sc.USER_ID] == "explicit" for s in spans)

        # an explicit handler merged into a run the global handler already records
        exporter.clear()
        inner = RunnableLambda(
            lambda x, config: model.invoke("hi", config={**config, "callbacks": [*config["callbacks"].handlers, tokentrail.langchain_handler()]})
        )
        inner.invoke("x")
        names = _names(exporter)
        assert names.count("chat gpt-4o") == 1 and len(names) == 2
    assert rt.open_spans == 0


class _MyEmbeddings(Embeddings):
    """A user's embeddings class defined before instrumenting."""

    model: str = "text-embedding-3-small"

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[float(len(t))] for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def test_embeddings_spans_estimated_nested_and_unpatched(mem: Any) -> None:
    rt, exporter = mem
    original = _MyEmbeddings.__dict__["embed_documents"]
    with tokentrail.instrument_langchain():
        emb = _MyEmbeddings()
        assert emb.embed_documents(["hello world", "second text"]) == [[11.0], [11.0]]
        (span,) = exporter.get_finished_spans()
        a = span.attributes
        assert span.name == "embeddings text-embedding-3-small" and span.kind is SpanKind.CLIENT
        assert (a[sc.GEN_AI_OPERATION_NAME], a[sc.GEN_AI_PROVIDER_NAME]) == ("embeddings", "openai")
        expected = tokens.count_tokens("hello world", "text-embedding-3-small") + tokens.count_tokens("second text", "text-embedding-3-small")
        assert a[sc.GEN_AI_USAGE_INPUT_TOKENS] == expected and a[sc.USAGE_ESTIMATED] is True
        assert Decimal(a[sc.COST_USD]) == Decimal("0.00000002") * expected  # $0.02 per million

        # a class defined while instrumented; async methods; nested calls give one span
        class Later(DeterministicFakeEmbedding):
            pass

        exporter.clear()
        later = Later(size=4)
        asyncio.run(later.aembed_query("q"))
        emb.embed_query("q")  # embed_query -> embed_documents: one span
        assert len(exporter.get_finished_spans()) == 2

        # inside a LangChain run: nested under it, attributed like it
        exporter.clear()
        lookup = RunnableLambda(lambda q: emb.embed_query(q)).with_config(run_name="lookup")
        lookup.invoke("q", config={"callbacks": [tokentrail.langchain_handler(team="search")]})
        run_span, emb_span = sorted(exporter.get_finished_spans(), key=lambda s: s.name)[::-1]
        assert run_span.name == "lookup" and parent_id(emb_span) == span_id(run_span)
        assert emb_span.attributes[sc.TEAM] == "search"

        # a failing call: error span, nothing billed
        class Broken(_MyEmbeddings):
            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                raise TimeoutError("slow")

        exporter.clear()
        with pytest.raises(TimeoutError):
            Broken().embed_documents(["x"])
        (span,) = exporter.get_finished_spans()
        assert span.status.status_code is StatusCode.ERROR and span.attributes[sc.COST_STATUS] == "no_usage"
    assert _MyEmbeddings.__dict__["embed_documents"] is original
    assert "__init_subclass__" not in Embeddings.__dict__
    exporter.clear()
    _MyEmbeddings().embed_documents(["x"])
    Later(size=4).embed_query("x")
    assert exporter.get_finished_spans() == ()
    assert rt.open_spans == 0


# -- budgets --------------------------------------------------------------------------------


class _Manager:
    """Stands in for tokentrail.budgets.BudgetManager: records the calls the handler makes."""

    def __init__(self, block: bool = False, block_after: int | None = None) -> None:
        self.block = block
        self.block_after = block_after
        self.reserved: list[dict[str, Any]] = []
        self.settled: list[Any] = []
        self.released: list[Any] = []

    def reserve(self, attribution: Any, **kw: Any) -> Any:
        over = self.block_after is not None and len(self.reserved) >= self.block_after
        if over or (self.block and kw["model"] == "gpt-4o"):
            raise tokentrail.BudgetExceeded("team-cap", spent_usd=Decimal("10"), limit_usd=Decimal("10"))
        self.reserved.append({"attribution": attribution, **kw})
        return len(self.reserved)

    def settle(self, reservation: Any, cost: Any) -> None:
        self.settled.append((reservation, cost))

    def release(self, reservation: Any) -> None:
        self.released.append(reservation)

    def flush(self) -> None:
        pass

    def shutdown(self) -> None:
        pass


def test_budget_reserve_settle_release(mem: Any) -> None:
    rt, exporter = mem
    manager = _Manager()
    rt._budgets = manager
    handler = tokentrail.langchain_handler(team="search")
    model = UsageChatModel()
    model.invoke([("user", "hello world")], config={"callbacks": [handler]}, max_tokens=256)
    (r,) = manager.reserved
    assert (r["model"], r["provider"], r["max_output_tokens"]) == ("gpt-4o", "openai", 256)
    assert r["prompt_tokens"] == tokens.count_messages([("user", "hello world")], "gpt-4o")
    assert r["attribution"].team == "search"
    ((res, cost),) = manager.settled
    assert res == 1 and cost.total_usd == Decimal("0.002875")

    with pytest.raises(ConnectionError):
        UsageChatModel(fail=1).invoke("x", config={"callbacks": [handler]})
    assert manager.released == [2]  # failed before any usage: the reservation is given back


def test_budget_exceeded_blocks_the_call_and_falls_back(mem: Any) -> None:
    rt, exporter = mem
    rt._budgets = _Manager(block=True)
    handler = tokentrail.langchain_handler()
    expensive = UsageChatModel()
    chain = PROMPT | expensive | StrOutputParser()
    with pytest.raises(tokentrail.BudgetExceeded):
        chain.invoke({"word": "x"}, config={"callbacks": [handler]})
    assert expensive._calls == 0  # the provider was never called
    spans = {s.name: s for s in exporter.get_finished_spans()}
    for name in ("chat gpt-4o", "RunnableSequence"):
        assert spans[name].status.status_code is StatusCode.ERROR
        assert spans[name].attributes[sc.ERROR_TYPE] == "BudgetExceeded"
    assert handler.open_runs == 0 and rt.open_spans == 0

    # the documented downgrade: fall back to a cheaper model
    exporter.clear()
    cheap = UsageChatModel(model_name="gpt-4o-mini", response_model="gpt-4o-mini-2024-07-18")
    fallback = expensive.with_fallbacks([cheap], exceptions_to_handle=(tokentrail.BudgetExceeded,))
    out = (PROMPT | fallback | StrOutputParser()).invoke({"word": "x"}, config={"callbacks": [handler]})
    assert out == "Hello there, friend" and expensive._calls == 0 and cheap._calls == 1
    names = _names(exporter)
    assert "chat gpt-4o" in names and "chat gpt-4o-mini" in names
    assert handler.open_runs == 0 and rt.open_spans == 0


def test_budget_blocking_one_prompt_of_a_batch_ends_every_started_run(mem: Any) -> None:
    from langchain_core.messages import HumanMessage

    rt, exporter = mem
    manager = _Manager(block_after=2)
    rt._budgets = manager
    handler = tokentrail.langchain_handler()
    model = UsageChatModel()
    with pytest.raises(tokentrail.BudgetExceeded):
        model.generate([[HumanMessage("a")], [HumanMessage("b")], [HumanMessage("c")]], callbacks=[handler])
    assert model._calls == 0
    spans = exporter.get_finished_spans()
    assert len(spans) == 3 and all(s.attributes[sc.ERROR_TYPE] == "BudgetExceeded" for s in spans)
    assert manager.released == [1, 2]  # the two runs that had reserved give it back
    assert handler.open_runs == 0 and rt.open_spans == 0
    from opentelemetry import trace

    assert trace.get_current_span() is trace.INVALID_SPAN
