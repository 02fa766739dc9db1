"""tokentrail.testing: the capture fixture a user's tests (and ours) use."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_fakes import UsageChatModel

import tokentrail
from tokentrail import runtime
from tokentrail.testing import DEFAULT_NOW, Capture, FixedClock, capture

pytest_plugins = ["tokentrail.testing"]

PROMPT = ChatPromptTemplate.from_messages([("human", "say {word}")])


def test_capture_keeps_spans_and_rows_on_a_fixed_clock_with_incremental_ids(tmp_path: Path) -> None:
    clock = FixedClock(DEFAULT_NOW)
    with capture(tmp_path / "home", clock=clock) as cap:
        assert runtime.current_or_none() is cap.rt
        chain = PROMPT | UsageChatModel() | StrOutputParser()
        assert chain.invoke({"word": "hi"}, config={"callbacks": [tokentrail.langchain_handler()]}) == "Hello there, friend"
        rows = {r["name"]: r for r in cap.rows}
        spans = {s.name: s for s in cap.spans}
    assert runtime.current_or_none() is None  # reset when the block ends
    assert set(rows) == {"RunnableSequence", "ChatPromptTemplate", "chat gpt-4o", "StrOutputParser"}
    root, llm = spans["RunnableSequence"], spans["chat gpt-4o"]
    assert root.context is not None and llm.context is not None and llm.parent is not None
    assert root.context.trace_id == 1 and root.context.span_id == 1 and llm.parent.span_id == 1
    assert {s.start_time for s in spans.values()} == {clock()}  # the clock never moved
    assert (rows["chat gpt-4o"]["input_tokens"], rows["chat gpt-4o"]["output_tokens"]) == (1000, 100)
    # gpt-4o-2024-08-06: 500 in at $2.50, 500 cached at $1.25, 100 out at $10 per million
    assert Decimal(rows["chat gpt-4o"]["cost_usd"]) == Decimal("0.002875")
    assert rows["chat gpt-4o"]["trace_id"] == format(1, "032x")


def test_tt_capture_fixture(tt_capture: Capture) -> None:
    chain = PROMPT | UsageChatModel() | StrOutputParser()
    handler = tokentrail.langchain_handler()
    chain.invoke({"word": "hi"}, config={"callbacks": [handler]})
    tt_capture.clock.advance(minutes=1)
    chain.invoke({"word": "hi"}, config={"callbacks": [handler]})
    first, second = (s for s in tt_capture.spans if s.name == "chat gpt-4o")
    assert first.start_time is not None and second.start_time is not None
    assert second.start_time - first.start_time == 60_000_000_000
    assert [s.context.trace_id for s in (first, second) if s.context is not None] == [1, 2]
