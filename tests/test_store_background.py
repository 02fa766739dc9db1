"""tokentrail's background I/O: unseen by OpenTelemetry instrumentations (suppressed, as the SDK's
BatchSpanProcessor does), and fork hooks that do not keep an exporter alive."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, get_value
from opentelemetry.sdk.trace import TracerProvider

from tokentrail.config import Settings
from tokentrail.exporters.clickhouse import ClickHouseSpanExporter
from tokentrail.exporters.processor import LedgerSpanProcessor
from tokentrail.store.deadline import Deadlines


class _Recording:
    """The exporter's real client, noting whether instrumentation was suppressed at each insert."""

    def __init__(self, client: Any, seen: list[object]) -> None:
        self._client, self._seen = client, seen

    def raw_insert(self, *a: Any, **kw: Any) -> Any:
        self._seen.append(get_value(_SUPPRESS_INSTRUMENTATION_KEY))
        return self._client.raw_insert(*a, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_inserts_and_the_export_thread_run_with_instrumentation_suppressed(ch_url: str, tmp_path: Path) -> None:
    exp = ClickHouseSpanExporter(Settings(clickhouse_url=ch_url, home=tmp_path / "home"))
    seen: list[object] = []
    real = exp._server_client
    exp._server_client = lambda: _Recording(real(), seen)  # type: ignore[method-assign]
    ticks: list[object] = []
    real_tick = exp.tick
    exp.tick = lambda: (ticks.append(get_value(_SUPPRESS_INSTRUMENTATION_KEY)), real_tick())[1]  # type: ignore[method-assign]
    processor = LedgerSpanProcessor(exp, delay_s=0.05)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("t")
    for i in range(3):
        with tracer.start_as_current_span("chat m", attributes={"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": i}):
            pass
    assert get_value(_SUPPRESS_INSTRUMENTATION_KEY) is None  # the application's own context is untouched
    processor.force_flush()
    provider.shutdown()
    assert seen and all(v is True for v in seen), seen
    assert exp.inserted_batches >= 1 and exp.spooled_batches == 0
    assert ticks and all(v is True for v in ticks), ticks


def test_deadline_worker_runs_calls_suppressed() -> None:
    io = Deadlines("t")
    try:
        assert io.run(lambda: get_value(_SUPPRESS_INSTRUMENTATION_KEY), 5) is True
    finally:
        io.close()
    assert get_value(_SUPPRESS_INSTRUMENTATION_KEY) is None


def test_fork_hooks_hold_the_exporter_weakly(tmp_path: Path) -> None:
    """An exporter (with its processor and I/O thread) dropped by its owner is freed: the
    os.register_at_fork hooks keep only weak references."""
    exp = ClickHouseSpanExporter(Settings(home=tmp_path / "home"))
    processor = LedgerSpanProcessor(exp)
    refs = [weakref.ref(exp), weakref.ref(processor), weakref.ref(exp._io)]
    processor.shutdown()
    del exp, processor
    gc.collect()
    assert [r() for r in refs] == [None, None, None]
