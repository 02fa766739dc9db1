"""pytest plugin for a peer's test suite: records every test's outcome to a JSON file and,
when TOKENTRAIL_PEER_INSTRUMENT=1, runs the whole session the way a user runs tokentrail:
`tokentrail.instrument_langchain()` with a budget active (large enough never to block).

    TOKENTRAIL_PEER_RESULTS=out.json TOKENTRAIL_PEER_INSTRUMENT=1 pytest -p tokentrail_peer_plugin ...

Loaded with `-p` (the folder on PYTHONPATH), before the suite's own conftest files.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import pytest
from opentelemetry.sdk.trace import SpanProcessor

_results: dict[str, dict[str, str]] = {}
_state: dict[str, Any] = {}


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("TOKENTRAIL_PEER_INSTRUMENT") != "1":
        return
    import tokentrail

    home = tempfile.mkdtemp(prefix="tokentrail-peer-")
    rt = tokentrail.configure(
        home=home,
        project="peer-suite",
        budgets=[tokentrail.Budget(name="peer-suite", limit_usd=1_000_000, period="month")],
    )
    counter = _Counter()
    rt.provider.add_span_processor(counter)
    _state.update(rt=rt, counter=counter, handle=tokentrail.instrument_langchain())


class _Counter(SpanProcessor):
    """Counts the spans tokentrail recorded, and the model calls among them that carry a cost."""

    def __init__(self) -> None:
        super().__init__()
        self.spans = 0
        self.priced = 0
        self.open: dict[int, str] = {}

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        self.open[span.context.span_id] = f"{span.name} ({os.environ.get('PYTEST_CURRENT_TEST', '').split(' ')[0]})"

    def on_end(self, span: Any) -> None:
        self.spans += 1
        self.open.pop(span.context.span_id, None)
        if (span.attributes or {}).get("tokentrail.cost.usd") is not None:
            self.priced += 1


def pytest_unconfigure(config: pytest.Config) -> None:
    handle = _state.pop("handle", None)
    rt = _state.pop("rt", None)
    summary: dict[str, Any] = {}
    if handle is not None:
        # runs the suite started and never ended (a test driving a run manager by hand)
        summary["open_runs"] = sorted(r.span.name for r in handle.handler._runs.values() if r.span is not None)
        handle.uninstrument()
    if rt is not None:
        rt.flush()
        counter = _state.pop("counter")
        summary.update(open_spans=sorted(counter.open.values()), spans=counter.spans, priced=counter.priced)
        rt.shutdown()
    path = os.environ.get("TOKENTRAIL_PEER_RESULTS")
    if path:
        with open(path, "w") as f:
            json.dump({"tests": _results, **summary}, f)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    entry = _results.setdefault(report.nodeid, {"outcome": "passed", "detail": ""})
    if hasattr(report, "wasxfail"):
        entry["outcome"] = "xfailed" if report.skipped else "xpassed"
        return
    if report.failed:
        entry["outcome"] = "error" if report.when != "call" else "failed"
        entry["detail"] = _first_line(report)
    elif report.skipped and entry["outcome"] == "passed":
        entry["outcome"] = "skipped"


def _first_line(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    return text.strip().splitlines()[0][:300] if text.strip() else ""
