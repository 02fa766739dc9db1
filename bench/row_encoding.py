"""Cost of turning finished spans into `tokentrail.spans` rows (the exporter thread's work),
beside the OpenTelemetry SDK's own `ReadableSpan.to_json()` in the same run.

    .venv/bin/python bench/row_encoding.py [--spans N]
"""

from __future__ import annotations

import argparse
import time

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tokentrail.exporters.rows import encode_spans

MODEL_ATTRS = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o-2024-08-06",
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.output_tokens": 150,
    "tokentrail.cost.usd": "0.004500000",
    "tokentrail.cost.input_usd": "0.003000000",
    "tokentrail.cost.output_usd": "0.001500000",
    "tokentrail.cost.status": "priced",
    "tokentrail.framework": "langchain",
    "tokentrail.project": "shop",
    "user.id": "alice",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spans", type=int, default=4000, help="spans to encode (half chain, half model)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("bench")
    for _ in range(args.spans // 2):
        with tracer.start_as_current_span("chain", attributes={"gen_ai.operation.name": "chain"}):
            with tracer.start_as_current_span("chat gpt-4o", attributes=MODEL_ATTRS):
                pass
    spans = exporter.get_finished_spans()

    def per_span(fn: object) -> float:
        best = float("inf")
        for _ in range(args.rounds):
            t = time.perf_counter()
            fn()  # type: ignore[operator]
            best = min(best, time.perf_counter() - t)
        return best / len(spans) * 1e6

    ours = per_span(lambda: encode_spans(spans))
    peer = per_span(lambda: [s.to_json(indent=None) for s in spans])
    print(f"{len(spans):,} spans, best of {args.rounds} rounds, µs per span")
    print(f"  tokentrail rows (JSONEachRow)         {ours:6.1f}")
    print(f"  peer: ReadableSpan.to_json() (OTel)   {peer:6.1f}")


if __name__ == "__main__":
    main()
