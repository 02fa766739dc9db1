"""OpenLLMetry cases of test_interop_in.py, run in a child pytest by
test_openllmetry_in_a_process_of_its_own (OpenLLMetry changes LangChain for good)."""

from __future__ import annotations

from typing import Any

import pytest
import test_interop_in
from mock_providers import openai_server
from test_interop_in import PLAIN, Foreign, _langchain, _langchain_exact, _rows

# the fixtures, by their names
globals()["foreign"] = test_interop_in.foreign
globals()["_relayed_teardown"] = test_interop_in._relayed_teardown


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
def test_openllmetry_langchain_exact(tt: Any, foreign: Foreign, stream: bool) -> None:
    _langchain_exact(tt, foreign, "openllmetry-langchain", "openllmetry", stream)


def test_openllmetry_over_openai_v2_counted_once(tt: Any, foreign: Foreign) -> None:
    foreign.instrument("openllmetry-langchain", "openai-v2")
    with openai_server(**PLAIN) as srv:
        _langchain(srv, False)
    rows = _rows(tt, "operation = 'chat'")
    # the client's span ends first and is kept; OpenLLMetry's, around it, is the same call
    assert [r["framework"] for r in rows] == ["otel-genai"]
    assert foreign.processor.duplicates == 1
