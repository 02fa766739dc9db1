"""tokentrail is invisible to the user's own LangChain callbacks: with `instrument_langchain()`
active, a recording handler of the user's (sync, async, a tracer), `astream_events(v2)` and
`astream_log` see exactly the events they see without it, for every run type, sync and async,
streaming and batch (langchain-ai/langchain#39633: async text LLMs lost on_llm_start)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableLambda, RunnableParallel
from langchain_core.tools import tool
from langchain_core.tracers.base import BaseTracer
from langchain_fakes import UsageChatModel

import tokentrail
from tokentrail import testing
from tokentrail.instrumentation.langchain import is_instrumented

EVENTS = (
    "on_llm_start",
    "on_chat_model_start",
    "on_llm_new_token",
    "on_llm_end",
    "on_llm_error",
    "on_chain_start",
    "on_chain_end",
    "on_chain_error",
    "on_tool_start",
    "on_tool_end",
    "on_tool_error",
    "on_retriever_start",
    "on_retriever_end",
    "on_retriever_error",
    "on_retry",
    "on_text",
    "on_custom_event",
)

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ADDR = re.compile(r"0x[0-9a-f]+")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]+\+00:00|datetime\.datetime\([^)]*\)")


class _Normaliser:
    """UUIDs (run ids, message ids) become their order of first appearance in one recording."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}

    def __call__(self, value: Any) -> str:
        text = _TIME.sub("<time>", _ADDR.sub("0x?", repr(value)))
        return _UUID.sub(lambda m: self.ids.setdefault(m.group(0), f"<id{len(self.ids)}>"), text)


Record = tuple[str, UUID | None, UUID | None, Any]


def _recorder_methods(sink: list[Record], is_async: bool) -> dict[str, Any]:
    def make(event: str) -> Any:
        def record(self: Any, *args: Any, run_id: UUID | None = None, parent_run_id: UUID | None = None, **kw: Any) -> None:
            sink.append((event, run_id, parent_run_id, (args, sorted(kw.items()))))

        if not is_async:
            return record

        async def arecord(self: Any, *args: Any, **kw: Any) -> None:
            record(self, *args, **kw)

        return arecord

    return {event: make(event) for event in EVENTS}


def recording_handler(kind: str, sink: list[Record]) -> BaseCallbackHandler:
    """The user's own handler: 'sync', 'async' (AsyncCallbackHandler) or 'tracer' (BaseTracer)."""
    if kind == "tracer":

        class UserTracer(BaseTracer):
            def _persist_run(self, run: Any) -> None:
                pass

            def _end_trace(self, run: Any) -> None:
                super()._end_trace(run)
                sink.append(("run", run.id, run.parent_run_id, (run.run_type, run.name, run.inputs, run.outputs, run.error, [e["name"] for e in run.events])))

        return UserTracer()
    base = AsyncCallbackHandler if kind == "async" else BaseCallbackHandler
    cls = type(f"User{kind.title()}Handler", (base,), _recorder_methods(sink, kind == "async"))
    return cls()


def canonical(records: list[Record], *, names_only: bool = False) -> tuple[list[str], list[tuple[str, ...]]]:
    """(the event sequence, normalised; each run's own sequence, sorted: the same runs whatever
    the order concurrent branches interleave in). names_only: the events' names, not payloads
    (for runs whose payloads depend on thread timing even without tokentrail)."""
    norm = _Normaliser()
    sequence = [norm((event, run, parent, payload)) for event, run, parent, payload in records]
    per_run: dict[UUID | None, list[str]] = {}
    for event, run, parent, payload in records:
        local = _Normaliser()
        local(run)  # the run itself is <id0>, its parent <id1>
        local(parent)
        per_run.setdefault(run, []).append(event if names_only else local((event, payload)))
    return sequence, sorted(tuple(v) for v in per_run.values())


# -- the runs -----------------------------------------------------------------------------------


class Shelf(BaseRetriever):
    def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
        return [Document(page_content=f"about {query}", metadata={"n": 1})]


@tool
def shout(text: str) -> str:
    """Upper-case the text."""
    return text.upper()


def _shapes() -> dict[str, Callable[[], Runnable[Any, Any]]]:
    chat = ChatPromptTemplate.from_messages([("system", "terse"), ("user", "Say {word}")])
    text = PromptTemplate.from_template("Say {word}")
    return {
        "chat": lambda: chat | UsageChatModel() | StrOutputParser(),
        "text_llm": lambda: text | FakeListLLM(responses=["one two three"]) | StrOutputParser(),
        "tool": lambda: RunnableLambda(lambda d: d["word"]) | shout,
        "retriever": lambda: RunnableLambda(lambda d: d["word"]) | Shelf(),
        "parallel": lambda: RunnableParallel(a=chat | UsageChatModel(), b=text | FakeListLLM(responses=["x"])),
        "error": lambda: RunnableLambda(lambda d: d["word"]) | RunnableLambda(_boom),
    }


def _boom(x: Any) -> Any:
    raise ValueError(f"no {x}")


MODES = ("invoke", "ainvoke", "stream", "astream", "batch", "abatch")
INPUTS = [{"word": "alpha"}, {"word": "beta"}]


def run(runnable: Runnable[Any, Any], mode: str, config: dict[str, Any]) -> Any:
    try:
        if mode == "invoke":
            return runnable.invoke(INPUTS[0], config=config)
        if mode == "stream":
            return list(runnable.stream(INPUTS[0], config=config))
        if mode == "batch":
            return runnable.batch(INPUTS, config=config, return_exceptions=True)

        async def go() -> Any:
            if mode == "ainvoke":
                return await runnable.ainvoke(INPUTS[0], config=config)
            if mode == "astream":
                return [c async for c in runnable.astream(INPUTS[0], config=config)]
            return await runnable.abatch(INPUTS, config=config, return_exceptions=True)

        return asyncio.run(go())
    except ValueError as e:
        return f"raised {e}"


def observe(shape: str, mode: str, kind: str) -> tuple[Any, list[Record]]:
    sink: list[Record] = []
    handler = recording_handler(kind, sink)
    result = run(_shapes()[shape](), mode, {"callbacks": [handler], "tags": ["mine"], "metadata": {"user": "u1"}})
    return result, sink


@pytest.mark.parametrize("kind", ["sync", "async", "tracer"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", list(_shapes()))
def test_user_handler_sees_the_same_events(mem: Any, shape: str, mode: str, kind: str, caplog: Any) -> None:
    rt, exporter = mem
    plain_result, plain = observe(shape, mode, kind)
    with tokentrail.instrument_langchain():
        tt_result, with_tt = observe(shape, mode, kind)
    assert not is_instrumented()
    assert exporter.get_finished_spans(), "tokentrail recorded nothing"

    # streaming parallel branches: the chunks' order (so the merged outputs) varies run to run,
    # with or without tokentrail
    racy = shape == "parallel" and mode in ("stream", "astream")
    if racy:
        tt_result, plain_result = sorted(map(_Normaliser(), tt_result)), sorted(map(_Normaliser(), plain_result))
    assert _Normaliser()(tt_result) == _Normaliser()(plain_result)
    plain_seq, plain_runs = canonical(plain, names_only=racy)
    tt_seq, tt_runs = canonical(with_tt, names_only=racy)
    assert tt_runs == plain_runs
    if mode not in ("batch", "abatch") and shape != "parallel":  # concurrent branches interleave as they like
        assert tt_seq == plain_seq
    assert len(with_tt) == len(plain) > 0
    # what langchain-core logs when a handler gets an end for a run it never saw
    assert "No indexed run ID" not in caplog.text
    assert "Error in " not in caplog.text


def _stream_events(runnable: Runnable[Any, Any], version: str = "v2") -> list[tuple[Any, ...]]:
    async def go() -> list[dict[str, Any]]:
        return [e async for e in runnable.astream_events(INPUTS[0], version=version, config={"tags": ["mine"]})]  # type: ignore[arg-type]

    norm = _Normaliser()
    out = []
    for e in asyncio.run(go()):
        out.append((e["event"], e["name"], tuple(e.get("tags", ())), norm(e.get("metadata")), norm(e["run_id"]), norm(e.get("parent_ids")), norm(e.get("data"))))
    return out


@pytest.mark.parametrize("shape", [s for s in _shapes() if s != "error"])
def test_astream_events_v2_the_same(mem: Any, shape: str, caplog: Any) -> None:
    rt, exporter = mem
    plain = _stream_events(_shapes()[shape]())
    with tokentrail.instrument_langchain():
        with_tt = _stream_events(_shapes()[shape]())
    assert exporter.get_finished_spans()
    if shape == "parallel":  # the branches interleave as they like, with or without tokentrail
        plain, with_tt = sorted(e[:2] for e in plain), sorted(e[:2] for e in with_tt)
    assert with_tt == plain
    kinds = {e[0] for e in plain}
    if shape == "text_llm":  # the events #39633 used to lose
        assert {"on_llm_start", "on_llm_end"} <= kinds
    assert "Error in " not in caplog.text


@pytest.mark.parametrize("shape", ["chat", "text_llm"])
def test_astream_log_the_same(mem: Any, shape: str) -> None:
    async def ops(runnable: Runnable[Any, Any]) -> list[tuple[str, str, str]]:
        norm = _Normaliser()
        out = []
        async for patch in runnable.astream_log(INPUTS[0]):
            for op in patch.ops:
                out.append((op["op"], op["path"], norm(op.get("value"))))
        return out

    plain = asyncio.run(ops(_shapes()[shape]()))
    with tokentrail.instrument_langchain():
        with_tt = asyncio.run(ops(_shapes()[shape]()))
    assert with_tt == plain
    model = "UsageChatModel" if shape == "chat" else "FakeListLLM"
    assert ("add", f"/logs/{model}/end_time", "'<time>'") in plain


def test_async_text_llm_with_a_budget(tt_home: Any) -> None:
    """The #39633 case under a budget: the user's async handler still sees the start, and the
    budget reservation is settled (spans carry the cost)."""
    from otel_helpers import configure_memory

    rt, exporter = configure_memory(tt_home, budgets=[tokentrail.Budget(name="all", limit_usd=100)])
    try:
        plain_result, plain = observe("text_llm", "ainvoke", "async")
        with tokentrail.instrument_langchain():
            tt_result, with_tt = observe("text_llm", "ainvoke", "async")
        assert canonical(with_tt) == canonical(plain)
        assert [r[0] for r in plain].count("on_llm_start") == 1
        assert any(s.attributes.get("tokentrail.cost.status") for s in exporter.get_finished_spans())
    finally:
        rt.shutdown()
        testing.reset()


def test_another_inline_handler_keeps_langchain_behaviour(mem: Any) -> None:
    """With LangSmith-style inline handler present, non-inline handlers see what they would see
    without tokentrail (langchain-core's own behaviour, bug included): tokentrail changes nothing."""

    class InlineUser(BaseCallbackHandler):
        run_inline = True

    def go() -> list[str]:
        sink: list[Record] = []
        handler = recording_handler("async", sink)
        chain = PromptTemplate.from_template("Say {word}") | FakeListLLM(responses=["ok"])
        asyncio.run(chain.ainvoke(INPUTS[0], config={"callbacks": [handler, InlineUser()]}))
        return [r[0] for r in sink]

    plain = go()
    with tokentrail.instrument_langchain():
        with_tt = go()
    assert with_tt == plain


def test_a_run_id_started_twice_ends_once(mem: Any) -> None:
    """A config passed on with its run_id starts a child under the parent's id (langchain-core
    tolerates it): tokentrail records the run once and ends it, leaving nothing open."""
    rt, exporter = mem
    fixed = UUID(int=7)

    @RunnableLambda
    async def child(x: str) -> str:
        return x

    @RunnableLambda
    async def parent(x: str, config: Any) -> str:
        config["run_id"] = fixed
        return await child.ainvoke(x, config)

    def parent_sync(x: str, config: Any) -> str:
        config["run_id"] = fixed
        return RunnableLambda(lambda y: y).invoke(x, config)

    with tokentrail.instrument_langchain() as handle:
        assert asyncio.run(parent.ainvoke("hello", {"run_id": fixed})) == "hello"
        assert RunnableLambda(parent_sync).invoke("hi", {"run_id": fixed}) == "hi"
        assert handle.handler.open_runs == 0
    assert rt.open_spans == 0
    assert [s.name for s in exporter.get_finished_spans()] == ["parent", "parent_sync"]
