"""OTel context across LangChain's threads and asyncio tasks; no span ever left open."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableParallel
from langchain_fakes import UsageChatModel
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from otel_helpers import parent_id, span_id

import tokentrail
from tokentrail import semconv as sc

PROMPT = ChatPromptTemplate.from_messages([("user", "Say {word}")])




def _assert_model_spans_current_inside(model: UsageChatModel, exporter: Any) -> None:
    """Inside each model call, the current OTel span is that call's own span."""
    model_spans = {span_id(s) for s in exporter.get_finished_spans() if s.name == "chat gpt-4o"}
    seen = {format(s.get_span_context().span_id, "016x") for s in model.seen_spans}
    assert len(model.seen_spans) == len(model_spans) and seen == model_spans


def test_joins_the_callers_trace_and_provider_spans_nest(mem: Any) -> None:
    rt, exporter = mem
    user_exporter = InMemorySpanExporter()
    user_provider = TracerProvider()
    user_provider.add_span_processor(SimpleSpanProcessor(user_exporter))
    user_tracer = user_provider.get_tracer("app")
    model = UsageChatModel()
    original = model._answer

    def answer_with_sdk_span() -> Any:  # what an instrumented provider SDK does inside the call
        with user_tracer.start_as_current_span("POST /v1/chat/completions"):
            return original()

    object.__setattr__(model, "_answer", answer_with_sdk_span)
    with user_tracer.start_as_current_span("request") as outer:
        (PROMPT | model).invoke({"word": "x"}, config={"callbacks": [tokentrail.langchain_handler()]})
        assert trace.get_current_span() is outer  # every context we attached came off
    spans = {s.name: s for s in exporter.get_finished_spans()}
    root, llm = spans["RunnableSequence"], spans["chat gpt-4o"]
    assert root.context.trace_id == outer.get_span_context().trace_id
    assert parent_id(root) == format(outer.get_span_context().span_id, "016x")
    (http,) = [s for s in user_exporter.get_finished_spans() if s.name.startswith("POST")]
    assert parent_id(http) == span_id(llm) and http.context.trace_id == llm.context.trace_id


def test_threads_parallel_and_batch(mem: Any) -> None:
    rt, exporter = mem
    model = UsageChatModel()
    handler = tokentrail.langchain_handler()
    parallel = RunnableParallel(a=PROMPT | model, b=PROMPT | model, c=PROMPT | model)
    parallel.invoke({"word": "x"}, config={"callbacks": [handler]})
    spans = exporter.get_finished_spans()
    (root,) = [s for s in spans if s.name == "RunnableParallel<a,b,c>"]
    seqs = [s for s in spans if s.name == "RunnableSequence"]
    assert len(seqs) == 3 and all(parent_id(s) == span_id(root) for s in seqs)
    llms = [s for s in spans if s.name == "chat gpt-4o"]
    assert sorted(parent_id(s) for s in llms) == sorted(span_id(s) for s in seqs)
    _assert_model_spans_current_inside(model, exporter)

    exporter.clear()
    model.seen_spans.clear()
    chain = PROMPT | model | StrOutputParser()
    assert len(chain.batch([{"word": str(i)} for i in range(8)], config={"callbacks": [handler], "max_concurrency": 3})) == 8
    spans = exporter.get_finished_spans()
    roots = [s for s in spans if s.name == "RunnableSequence"]
    assert len(roots) == 8 and len({s.context.trace_id for s in roots}) == 8  # one trace per input
    for s in spans:
        if s.name != "RunnableSequence":
            (p,) = [r for r in roots if r.context.trace_id == s.context.trace_id]
            assert parent_id(s) == span_id(p)
    _assert_model_spans_current_inside(model, exporter)
    assert handler.open_runs == 0 and rt.open_spans == 0


def test_asyncio_ainvoke_abatch_astream_and_events(mem: Any) -> None:
    rt, exporter = mem
    model = UsageChatModel(delay=0.001)
    handler = tokentrail.langchain_handler()
    chain = PROMPT | model | StrOutputParser()

    async def main() -> None:
        assert await chain.ainvoke({"word": "x"}, config={"callbacks": [handler]}) == "Hello there, friend"
        out = await chain.abatch([{"word": str(i)} for i in range(6)], config={"callbacks": [handler], "max_concurrency": 2})
        assert len(out) == 6
        pieces = [p async for p in chain.astream({"word": "s"}, config={"callbacks": [handler]})]
        assert "".join(pieces) == "Hello there, friend"
        events = [e async for e in chain.astream_events({"word": "e"}, config={"callbacks": [handler]}, version="v2")]
        assert any(e["event"] == "on_chat_model_stream" for e in events)
        # concurrent tasks keep their own contexts
        await asyncio.gather(*(chain.ainvoke({"word": str(i)}, config={"callbacks": [handler]}) for i in range(4)))
        assert trace.get_current_span() is trace.INVALID_SPAN

    asyncio.run(main())
    spans = exporter.get_finished_spans()
    roots = [s for s in spans if s.name == "RunnableSequence"]
    assert len(roots) == 1 + 6 + 1 + 1 + 4
    for s in spans:
        if s.name != "RunnableSequence":
            (p,) = [r for r in roots if r.context.trace_id == s.context.trace_id]
            assert parent_id(s) == span_id(p)
    _assert_model_spans_current_inside(model, exporter)
    llms = [s for s in spans if s.name == "chat gpt-4o"]
    assert all(s.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 1000 for s in llms)
    streamed = [s for s in llms if sc.TIME_TO_FIRST_TOKEN_MS in s.attributes]
    assert len(streamed) == 2  # astream and astream_events
    assert handler.open_runs == 0 and rt.open_spans == 0


def test_no_span_left_open_after_1000_errors_cancellations_and_abandoned_streams(mem: Any) -> None:
    rt, exporter = mem
    handler = tokentrail.langchain_handler()
    failing = UsageChatModel(fail=10**9)
    slow = UsageChatModel(delay=0.05)
    fine = UsageChatModel()
    bad_chain = PROMPT | failing | StrOutputParser()
    slow_chain = PROMPT | slow | StrOutputParser()
    stream_chain = PROMPT | fine | StrOutputParser()
    cfg = {"callbacks": [handler]}

    for _ in range(250):  # errors
        with pytest.raises(ConnectionError):
            bad_chain.invoke({"word": "x"}, config=cfg)
    for _ in range(250):  # sync streams abandoned after the first chunk (closed, or just dropped)
        stream = stream_chain.stream({"word": "x"}, config=cfg)
        next(stream)
        del stream
    assert trace.get_current_span() is trace.INVALID_SPAN

    async def cancelled_and_abandoned() -> None:
        for i in range(250):  # cancellations
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(slow_chain.ainvoke({"word": str(i)}, config=cfg), timeout=0.001)
        for _ in range(250):  # async streams abandoned and closed
            agen = stream_chain.astream({"word": "x"}, config=cfg)
            await agen.__anext__()
            await agen.aclose()
        # LangChain finalises an abandoned async stream's inner generators from another
        # task; the next run started here must still be a root of its own trace...
        collected.extend(exporter.get_finished_spans())
        exporter.clear()
        await stream_chain.ainvoke({"word": "after"}, config={**cfg, "run_name": "after"})
        (after,) = [s for s in exporter.get_finished_spans() if s.name == "after"]
        assert after.parent is None
        # ...and leave this task with no span of ours current
        assert trace.get_current_span() is trace.INVALID_SPAN

    collected: list[Any] = []
    asyncio.run(cancelled_and_abandoned())
    gc.collect()
    assert rt.open_spans == 0
    assert handler.open_runs == 0
    spans = collected + list(exporter.get_finished_spans())
    llm = [s for s in spans if s.name == "chat gpt-4o"]
    errors = [s for s in spans if s.status.status_code is StatusCode.ERROR]
    assert {s.attributes[sc.ERROR_TYPE] for s in errors} == {"ConnectionError", "CancelledError"}
    assert sum(s.name == "RunnableSequence" and s.attributes[sc.ERROR_TYPE] == "CancelledError" for s in errors) == 250
    abandoned = [s for s in llm if s.attributes.get("tokentrail.abandoned")]
    streams = [s for s in abandoned if sc.ERROR_TYPE not in s.attributes]
    assert len(streams) == 500 and all(s.status.status_code is StatusCode.UNSET for s in streams)
    # langchain-core sends no end callback to a model run cancelled inside agenerate: those
    # end with their root, as cancelled
    cancelled = [s for s in abandoned if sc.ERROR_TYPE in s.attributes]
    assert all(s.attributes[sc.ERROR_TYPE] == "CancelledError" for s in cancelled)
    # either way the prompt was sent: it is charged, estimated
    assert all(s.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] > 0 and s.attributes[sc.USAGE_ESTIMATED] for s in abandoned)


def test_async_parallel_branch_that_outlives_the_error_is_still_billed(mem: Any) -> None:
    rt, exporter = mem
    handler = tokentrail.langchain_handler()
    slow = UsageChatModel(delay=0.2)

    def fail(_: Any) -> str:
        raise ValueError("branch a failed")

    from langchain_core.runnables import RunnableLambda

    parallel = RunnableParallel(a=RunnableLambda(fail), b=PROMPT | slow)

    async def main() -> None:
        with pytest.raises(ValueError):
            await parallel.ainvoke({"word": "x"}, config={"callbacks": [handler]})
        # asyncio.gather raised the first error; branch b runs on and finishes
        for _ in range(100):
            if handler.open_runs == 0:
                break
            await asyncio.sleep(0.05)

    asyncio.run(main())
    assert handler.open_runs == 0 and rt.open_spans == 0
    (llm,) = [s for s in exporter.get_finished_spans() if s.name == "chat gpt-4o"]
    # the call completed: real usage and cost, not an abandoned estimate
    assert llm.status.status_code is StatusCode.UNSET and "tokentrail.abandoned" not in llm.attributes
    assert llm.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] == 1000 and llm.attributes[sc.COST_USD] == "0.002875000"


def test_runs_whose_end_never_comes_are_ended_with_their_root(mem: Any) -> None:
    from uuid import uuid4

    rt, exporter = mem
    handler = tokentrail.langchain_handler()
    handler.orphan_grace_s = 0.0
    root, child, model_run = uuid4(), uuid4(), uuid4()
    handler.on_chain_start(None, {}, run_id=root, name="root")
    handler.on_chain_start(None, {}, run_id=child, parent_run_id=root, name="child")
    handler.on_chat_model_start(
        {"id": ["langchain", "ChatOpenAI"]},
        [[("user", "hello world")]],
        run_id=model_run,
        parent_run_id=child,
        invocation_params={"model": "gpt-4o-mini"},
    )
    handler.on_llm_new_token("Hel", run_id=model_run)
    handler.on_chain_error(RuntimeError("boom"), run_id=root)  # the children never end by themselves
    assert handler.open_runs == 0 and rt.open_spans == 0
    spans = {s.name: s for s in exporter.get_finished_spans()}
    llm = spans["chat gpt-4o-mini"]
    assert llm.attributes["tokentrail.abandoned"] is True and llm.attributes[sc.ERROR_TYPE] == "RuntimeError"
    assert llm.attributes[sc.USAGE_ESTIMATED] is True and llm.attributes[sc.GEN_AI_USAGE_INPUT_TOKENS] > 0
    assert parent_id(llm) == span_id(spans["child"]) and parent_id(spans["child"]) == span_id(spans["root"])
    assert trace.get_current_span() is trace.INVALID_SPAN


def test_a_failed_roots_open_runs_get_a_grace_period(mem: Any) -> None:
    from uuid import uuid4

    rt, exporter = mem
    handler = tokentrail.langchain_handler()
    root, child = uuid4(), uuid4()
    handler.on_chain_start(None, {}, run_id=root, name="root")
    handler.on_chain_start(None, {}, run_id=child, parent_run_id=root, name="still running")
    handler.on_chain_error(ValueError("first branch failed"), run_id=root)
    assert handler.open_runs == 1  # may still end by itself
    handler.orphan_grace_s = 0.0
    handler._deferred = [(0.0, r, f) for _, r, f in handler._deferred]  # the grace period is over
    following = uuid4()
    handler.on_chain_start(None, {}, run_id=following, name="next")  # sweeps are checked as runs start
    assert handler.open_runs == 1  # only "next"
    handler.on_chain_end({}, run_id=following)
    assert rt.open_spans == 0 and trace.get_current_span() is trace.INVALID_SPAN
    (late,) = [s for s in exporter.get_finished_spans() if s.name == "still running"]
    assert late.attributes[sc.ERROR_TYPE] == "ValueError" and late.attributes["tokentrail.abandoned"] is True
    assert late.status.description == "first branch failed"
