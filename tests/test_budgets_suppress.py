"""Budgets' background I/O (the store refresh, budget_events writes, webhooks) runs under
OpenTelemetry's suppress-instrumentation context: a user's own instrumentation, which checks it
as every opentelemetry-python-contrib instrumentation does, records none of it — while it still
records the user's own calls."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tokentrail
from tokentrail import Budget, BudgetExceeded, testing
from tokentrail.context import Attribution

utils = pytest.importorskip("opentelemetry.instrumentation.utils")

PRICES = {"m-out": {"input_per_mtok": 0, "output_per_mtok": 3000}}  # 100 output tokens: $0.30


class _Hook(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def user_spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """The application's own tracing: its TracerProvider, and instrumentation of urllib and of
    the ClickHouse client that, like contrib's, skips work under suppress-instrumentation."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("the-app")
    urlopen, query = urllib.request.urlopen, Client.query

    def traced_urlopen(*a: Any, **kw: Any) -> Any:
        if not utils.is_http_instrumentation_enabled():
            return urlopen(*a, **kw)
        with tracer.start_as_current_span("HTTP POST"):
            return urlopen(*a, **kw)

    def traced_query(self: Any, *a: Any, **kw: Any) -> Any:
        if not utils.is_instrumentation_enabled():
            return query(self, *a, **kw)
        with tracer.start_as_current_span("clickhouse query"):
            return query(self, *a, **kw)

    monkeypatch.setattr(urllib.request, "urlopen", traced_urlopen)
    monkeypatch.setattr(Client, "query", traced_query)
    yield exporter
    provider.shutdown()


def test_user_instrumentation_sees_none_of_the_budget_threads_io(tt_home: Path, monkeypatch: pytest.MonkeyPatch, user_spans: InMemorySpanExporter) -> None:
    monkeypatch.setenv("TOKENTRAIL_BUDGET_REFRESH_SECONDS", "3600")
    srv = ThreadingHTTPServer(("127.0.0.1", 0), type("Hook", (_Hook,), {"hits": []}))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/hook"
    try:
        rt = tokentrail.configure(home=tt_home, project="shop", prices=PRICES, webhook_url=url, budgets=[Budget(name="b", limit_usd="0.3", warn_at=())])
        m = rt.budgets
        assert m is not None
        m.wait_ready(10)
        r = m.reserve(Attribution(project="shop"), model="m-out", provider=None, prompt_tokens=0, max_output_tokens=100)
        assert r is not None
        m.settle(r, Decimal("0.3"))
        with pytest.raises(BudgetExceeded):
            m.reserve(Attribution(project="shop"), model="m-out", provider=None, prompt_tokens=0, max_output_tokens=100)
        assert m.refresh()  # reads the store (the ClickHouse client)
        m.flush()  # writes budget_events, queues the webhooks
        hits = srv.RequestHandlerClass.hits  # type: ignore[attr-defined]
        deadline = time.monotonic() + 5
        while len(hits) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert hits == ["/hook", "/hook"]  # the 100% warning and the block went out
        assert user_spans.get_finished_spans() == ()  # and the app's tracing saw none of it
        # the app's own calls are still traced: the instrumentation above does work
        urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST")).read()
        assert [s.name for s in user_spans.get_finished_spans()] == ["HTTP POST"]
    finally:
        srv.shutdown()
        testing.reset()
