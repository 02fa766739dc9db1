"""Added time per LlamaIndex query: bare, tokentrail, openinference-instrumentation-llama-index.

    .venv/bin/python bench/overhead_llamaindex.py [--queries 300] [--rounds 7]

A small VectorStoreIndex (MockEmbedding, 8 documents) and a query engine over MockLLM: each
query is a retrieval (one query embedding) and a synthesis (one LLM call), ~10 LlamaIndex spans
of which tokentrail emits 6. The three set-ups run in the same process, in interleaved rounds
(bare, tokentrail, openinference, bare, ...), and the median round is reported, so machine
noise hits all three alike.

- tokentrail: `instrument_llamaindex()` on a configured instance, its real pipeline (spans
  batched off-thread to the spool of an embedded store in a temporary directory);
- openinference: `LlamaIndexInstrumentor().instrument()` on its own TracerProvider with an
  in-memory exporter (SimpleSpanProcessor: the export is a list append).

Needs the `bench` extra (openinference-instrumentation-llama-index); without it the
openinference column is skipped.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Result:
    name: str
    cpu_us: float  # process CPU time per query (all threads: an exporter's thread counts)
    wall_us: float


def _engine() -> Any:
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM

    docs = [Document(text=f"Document {i}: refunds, shipping and gift cards, section {i}.") for i in range(8)]
    index = VectorStoreIndex.from_documents(docs, embed_model=MockEmbedding(embed_dim=16))
    return index.as_query_engine(llm=MockLLM(max_tokens=16), similarity_top_k=2)


def _time(engine: Any, n: int, settle: Callable[[], Any] = lambda: None) -> tuple[float, float]:
    """(CPU µs, wall µs) per query over n queries. CPU time is the figure to read on a shared
    machine (wall time also counts other processes' turns on the cores); it includes `settle`
    (exporting the round's spans), so work moved to a background thread is not hidden."""
    c0, t0 = time.process_time(), time.perf_counter()
    for i in range(n):
        engine.query(f"question {i % 7}")
    wall = time.perf_counter() - t0
    settle()
    return (time.process_time() - c0) / n * 1e6, wall / n * 1e6


class _Setup:
    def __init__(self, name: str, on: Callable[[], Any], off: Callable[[Any], None]) -> None:
        self.name = name
        self.on = on
        self.off = off
        self.settle: Callable[[], Any] = lambda: None
        self.cpu: list[float] = []
        self.wall: list[float] = []


def bench_llamaindex(queries: int = 300, rounds: int = 7, *, out: Any = sys.stdout) -> list[Result]:
    """Run the comparison; print a table; return µs per query for each set-up."""
    import tokentrail
    from tokentrail import runtime

    home = tempfile.mkdtemp(prefix="tt-bench-li-")
    rt = tokentrail.configure(home=home, project="bench")

    setups = [_Setup("bare", lambda: None, lambda _: None)]
    setups.append(_Setup("tokentrail", tokentrail.instrument_llamaindex, lambda h: h.uninstrument()))
    setups[-1].settle = rt.flush
    try:
        from openinference.instrumentation.llama_index import LlamaIndexInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))

        def oi_on() -> Any:
            inst = LlamaIndexInstrumentor()
            inst.instrument(tracer_provider=provider)
            return inst

        def oi_off(inst: Any) -> None:
            inst.uninstrument()
            exporter.clear()

        setups.append(_Setup("openinference", oi_on, oi_off))
        setups[-1].settle = provider.force_flush
    except ImportError:
        print("openinference-instrumentation-llama-index is not installed: pip install 'tokentrail[bench]'", file=out)

    engine = _engine()
    for s in setups:  # warm-up: imports, tokenizers, first spans
        h = s.on()
        _time(engine, max(20, queries // 10))
        s.off(h)
    for _ in range(rounds):
        for s in setups:
            h = s.on()
            cpu, wall = _time(engine, queries, s.settle)
            s.off(h)
            s.cpu.append(cpu)
            s.wall.append(wall)
    results = [Result(s.name, statistics.median(s.cpu), statistics.median(s.wall)) for s in setups]
    bare = results[0]
    print(f"LlamaIndex query (MockLLM + MockEmbedding, top-2 of 8 docs), {queries} queries x {rounds} rounds, median round", file=out)
    print(f"{'set-up':<15}{'CPU µs/query':>13}{'added':>8}{'x bare':>8}{'wall µs/query':>15}{'added':>8}", file=out)
    for r in results:
        print(
            f"{r.name:<15}{r.cpu_us:>13.0f}{r.cpu_us - bare.cpu_us:>8.0f}{r.cpu_us / bare.cpu_us:>8.2f}"
            f"{r.wall_us:>15.0f}{r.wall_us - bare.wall_us:>8.0f}",
            file=out,
        )
    by = {r.name: r for r in results}
    if "openinference" in by:
        added_tt = by["tokentrail"].cpu_us - bare.cpu_us
        added_oi = by["openinference"].cpu_us - bare.cpu_us
        print(f"added CPU per query: tokentrail {added_tt:.0f} µs, openinference {added_oi:.0f} µs (ratio {added_tt / added_oi:.2f})", file=out)
    rt.shutdown()
    runtime._default = None
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--rounds", type=int, default=7)
    a = p.parse_args(argv)
    bench_llamaindex(a.queries, a.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
