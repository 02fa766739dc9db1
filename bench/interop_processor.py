"""µs per span that tokentrail.span_processor() adds to a user's own TracerProvider.

    .venv/bin/python bench/interop_processor.py                 # 20,000 spans per variant
    .venv/bin/python bench/interop_processor.py --spans 5000

Each GenAI span is an OpenLLMetry-shaped LangChain chat span (gen_ai.* usage and model,
traceloop attributes, 14 attributes), made with the SDK's tracer as the instrumentation makes
it; each plain span is an HTTP client span with as many attributes (no GenAI key). Variants,
interleaved in rounds (a new random order each round), median over rounds:

    floor        TracerProvider + BatchSpanProcessor, exporter discarding (what tracing costs)
    processor    the same + tokentrail.span_processor() (recognise, normalise, price, write the
                 ledger row through tokentrail's own processor to a real embedded-store spool)
    (each for GenAI spans and for plain spans)

Added = processor - floor, per span. Each timed run ends with the provider's force_flush and
tokentrail's ledger's: the rows' encoding and spool writes are in the figure.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

ATTRS = {
    "traceloop.workflow.name": "faq",
    "traceloop.entity.path": "",
    "traceloop.association.properties.ls_provider": "openai",
    "traceloop.association.properties.ls_model_name": "gpt-4o",
    "traceloop.association.properties.user_id": "alice",
    "gen_ai.provider.name": "openai",
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.response.id": "chatcmpl-1",
    "gen_ai.usage.input_tokens": 1000,
    "gen_ai.usage.output_tokens": 200,
    "gen_ai.usage.total_tokens": 1200,
    "gen_ai.usage.cache_read.input_tokens": 400,
}
PLAIN = {
    "http.request.method": "POST",
    "url.full": "https://api.example.com/v1/orders",
    "url.scheme": "https",
    "server.address": "api.example.com",
    "server.port": 443,
    "network.protocol.version": "1.1",
    "http.response.status_code": 200,
    "user_agent.original": "shop/1.0",
    "http.request.body.size": 512,
    "http.response.body.size": 2048,
    "service.peer.name": "orders",
    "enduser.id": "alice",
    "session.id": "s1",
    "app.feature": "checkout",
}


class Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def provider(with_processor: bool) -> TracerProvider:
    tp = TracerProvider()
    tp.add_span_processor(BatchSpanProcessor(Discard()))
    if with_processor:
        import tokentrail

        tp.add_span_processor(tokentrail.span_processor())
    return tp


def run(tp: TracerProvider, n: int, attrs: dict[str, Any] = ATTRS, ledger: Any = None) -> tuple[float, float]:
    """(wall, CPU) µs per span; CPU is the process's, every thread's: on a shared machine it
    moves less with the load than the wall clock does."""
    tracer = tp.get_tracer("opentelemetry.instrumentation.langchain")
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        span = tracer.start_span("ChatOpenAI.chat", attributes=attrs)
        span.end()
    tp.force_flush()
    if ledger is not None:  # tokentrail's ledger too (span_processor()'s force_flush does it: said here for older versions)
        ledger.force_flush()
    return (time.perf_counter() - t0) / n * 1e6, (time.process_time() - c0) / n * 1e6


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args(argv)
    import tokentrail

    with tempfile.TemporaryDirectory() as home:
        rt = tokentrail.configure(home=home, project="bench")
        variants: dict[str, Any] = {
            "floor": (provider(False), ATTRS), "processor": (provider(True), ATTRS),
            "floor-plain": (provider(False), PLAIN), "processor-plain": (provider(True), PLAIN),
        }  # fmt: skip
        for tp, attrs in variants.values():
            run(tp, 200, attrs)  # warm up: imports, price plans
        per = max(1, args.spans // args.rounds)
        results: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
        for _ in range(args.rounds):
            order = list(variants)
            random.shuffle(order)
            for name in order:
                results[name].append(run(variants[name][0], per, variants[name][1], rt.processor if "processor" in name else None))
        rt.flush()
        wall = {k: statistics.median(w for w, _ in v) for k, v in results.items()}
        cpu = {k: statistics.median(c for _, c in v) for k, v in results.items()}
        print(f"spans per variant: {per * args.rounds} ({args.rounds} rounds); µs per span, median of rounds")
        print(f"{'':34s} {'wall':>8s} {'CPU':>8s}")
        for kind, suffix in (("GenAI span", ""), ("plain span", "-plain")):
            f, p = "floor" + suffix, "processor" + suffix
            print(f"{kind + '  floor':34s} {wall[f]:8.2f} {cpu[f]:8.2f}   SDK span + BatchSpanProcessor")
            print(f"{kind + '  processor':34s} {wall[p]:8.2f} {cpu[p]:8.2f}   + tokentrail.span_processor()")
            print(f"{kind + '  added':34s} {wall[p] - wall[f]:8.2f} {cpu[p] - cpu[f]:8.2f}")
        print(f"ledger rows written: {rt.processor.ended_spans}")
        rt.shutdown()


if __name__ == "__main__":
    main()
