"""µs per span that tokentrail.span_processor() adds to a user's own TracerProvider.

    .venv/bin/python bench/interop_processor.py                 # 20,000 spans per variant
    .venv/bin/python bench/interop_processor.py --spans 5000

Each span is an OpenLLMetry-shaped LangChain chat span (gen_ai.* usage and model, traceloop
attributes, 14 attributes), made with the SDK's tracer as the instrumentation makes it. Variants,
interleaved in rounds (a new random order each round), median over rounds:

    floor       TracerProvider + BatchSpanProcessor, exporter discarding (what tracing costs)
    processor   the same + tokentrail.span_processor() (recognise, normalise, price, write the
                ledger row through tokentrail's own processor to a real embedded-store spool)

Added = processor - floor, per span (the export thread included: it shares the interpreter).
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


def run(tp: TracerProvider, n: int) -> float:
    tracer = tp.get_tracer("opentelemetry.instrumentation.langchain")
    t0 = time.perf_counter()
    for _ in range(n):
        span = tracer.start_span("ChatOpenAI.chat", attributes=ATTRS)
        span.end()
    tp.force_flush()
    return (time.perf_counter() - t0) / n * 1e6


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args(argv)
    import tokentrail

    with tempfile.TemporaryDirectory() as home:
        rt = tokentrail.configure(home=home, project="bench")
        variants: dict[str, Any] = {"floor": provider(False), "processor": provider(True)}
        for tp in variants.values():
            run(tp, 200)  # warm up: imports, price plans
        per = max(1, args.spans // args.rounds)
        results: dict[str, list[float]] = {k: [] for k in variants}
        for _ in range(args.rounds):
            order = list(variants)
            random.shuffle(order)
            for name in order:
                results[name].append(run(variants[name], per))
        rt.flush()
        floor = statistics.median(results["floor"])
        proc = statistics.median(results["processor"])
        print(f"spans per variant: {per * args.rounds} ({args.rounds} rounds)")
        print(f"floor      {floor:8.2f} µs/span  (SDK span + BatchSpanProcessor)")
        print(f"processor  {proc:8.2f} µs/span  (+ tokentrail.span_processor())")
        print(f"added      {proc - floor:8.2f} µs/span  ({proc / floor:.2f}x the floor)")
        print(f"ledger rows written: {rt.processor.ended_spans}")
        rt.shutdown()


if __name__ == "__main__":
    main()
