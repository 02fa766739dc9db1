"""Time tokentrail adds to each LLM call, beside the OpenTelemetry floor and OpenInference.

    .venv/bin/python bench/overhead.py                     # 20,000 calls per variant
    .venv/bin/python bench/overhead.py --calls 2000 --framework langchain

For each framework a pipeline is built around an offline fake model that reports usage (so
tokentrail really prices every call), and run under each variant:

    bare           no instrumentation
    otel-floor     the bare call, then the bare OpenTelemetry SDK making as many nested spans
                   as tokentrail records for it (4 for LangChain, 5 for LlamaIndex), 10
                   attributes each (TracerProvider + BatchSpanProcessor, exporter discarding):
                   what any tracing of the call costs at least
    tokentrail     tokentrail instrumentation, spans exported to a real embedded-store spool
                   (BatchSpanProcessor -> JSONEachRow files in a temporary TOKENTRAIL_HOME)
    openinference  Arize OpenInference instrumentation, spans kept by an in-memory exporter

Calls are split into rounds and the variants interleaved in a new random order each round, so
drift on a shared machine hits them alike; the figure per variant is the median over rounds.
Added time = variant - bare (background threads included: they share the interpreter). The
targets: tokentrail adds at most 1.5x the floor's added time and at most 0.25x OpenInference's.
Needs the `bench` extra (openinference-instrumentation-langchain / -llama-index).

Another framework plugs in by adding a function that returns its Variants to FRAMEWORKS.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# a variant: (name, context manager factory that switches the instrumentation on, call)
Setup = Callable[[], AbstractContextManager[Any]]


@dataclass
class Variants:
    """What one framework's benchmark runs: a call, and how to switch each variant on."""

    framework: str
    description: str
    call: Callable[[int], Any]
    setups: dict[str, Setup]
    spans_per_call: int


# -- LangChain --------------------------------------------------------------------------------


def langchain_variants(home: Path) -> Variants:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.language_models.chat_models import LangSmithParams
    from langchain_core.messages import AIMessage, BaseMessage
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langchain_core.prompts import ChatPromptTemplate

    class FakeOpenAIChat(BaseChatModel):
        """Answers at once, with the usage and model name a real OpenAI call reports."""

        model_name: str = "gpt-4o-mini"

        @property
        def _llm_type(self) -> str:
            return "bench-fake-chat"

        @property
        def _identifying_params(self) -> dict[str, Any]:
            return {"model_name": self.model_name}

        def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
            params = super()._get_ls_params(stop=stop, **kwargs)
            params["ls_provider"] = "openai"
            params["ls_model_name"] = self.model_name
            return params

        def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any) -> ChatResult:
            msg = AIMessage(
                "A short, helpful answer.",
                usage_metadata={
                    "input_tokens": 120,
                    "output_tokens": 30,
                    "total_tokens": 150,
                    "input_token_details": {"cache_read": 64},
                },
                response_metadata={"model_name": "gpt-4o-mini-2024-07-18"},
            )
            return ChatResult(generations=[ChatGeneration(message=msg)])

    prompt = ChatPromptTemplate.from_messages([("system", "You answer briefly."), ("user", "Question {i}: {q}")])
    chain = prompt | FakeOpenAIChat() | StrOutputParser()

    def call(i: int) -> Any:
        return chain.invoke({"i": i, "q": "what is the capital of France?"})

    @contextmanager
    def tokentrail_on() -> Iterator[None]:
        import tokentrail

        with tokentrail.instrument_langchain():
            yield

    oi = _openinference_langchain()

    return Variants(
        framework="langchain",
        description="ChatPromptTemplate | fake chat model (usage reported) | StrOutputParser, .invoke",
        call=call,
        setups={"bare": nullcontext, "tokentrail": tokentrail_on, **({"openinference": oi} if oi else {})},
        spans_per_call=4,
    )


# -- the OpenTelemetry floor ----------------------------------------------------------------------


FLOOR_ATTRIBUTES = {f"bench.attribute.{i}": f"value {i}" for i in range(10)}


def floor_spans(depth: int) -> Callable[[], None]:
    """`depth` nested spans with 10 attributes each, from the bare SDK (exporter discarding)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    tracer = provider.get_tracer("bench-floor")

    def nest(level: int) -> None:
        with tracer.start_as_current_span(f"span {level}", attributes=FLOOR_ATTRIBUTES):
            if level + 1 < depth:
                nest(level + 1)

    return lambda: nest(0)


def _openinference_langchain() -> Setup | None:
    try:
        from openinference.instrumentation.langchain import LangChainInstrumentor
    except ImportError:
        print("openinference-instrumentation-langchain is not installed (pip install 'tokentrail[bench]'): skipped", file=sys.stderr)
        return None
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    # openinference calls a deprecated langchain-core API on every span: keep the output readable
    warnings.filterwarnings("ignore", message=r"Calling \.text\(\) as a method is deprecated")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    @contextmanager
    def on() -> Iterator[None]:
        instrumentor = LangChainInstrumentor()
        instrumentor.instrument(tracer_provider=provider)
        try:
            yield
        finally:
            instrumentor.uninstrument()
            exporter.clear()  # keep memory flat across rounds

    return on


# -- LlamaIndex -------------------------------------------------------------------------------


def llamaindex_variants(home: Path) -> Variants:
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.base.llms.types import CompletionResponse, LLMMetadata
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM
    from llama_index.core.llms.callbacks import llm_completion_callback

    class UsageMockLLM(MockLLM):
        """MockLLM that answers at once with the usage and model an OpenAI call reports."""

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name="gpt-4o-mini", num_output=self.max_tokens or -1)

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
            raw = {
                "model": "gpt-4o-mini-2024-07-18",
                "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150, "prompt_tokens_details": {"cached_tokens": 64}},
            }
            return CompletionResponse(text="A short, helpful answer.", raw=raw)

    docs = [Document(text=f"Section {i}: refunds, shipping times and gift cards, rule {i}.") for i in range(8)]
    # MockEmbedding reports no tokens, like llama-index-embeddings-openai: tokentrail counts them
    index = VectorStoreIndex.from_documents(docs, embed_model=MockEmbedding(embed_dim=16))
    engine = index.as_query_engine(llm=UsageMockLLM(max_tokens=64), similarity_top_k=2)

    def call(i: int) -> Any:
        return engine.query(f"question {i % 7}: how long do refunds take?")

    @contextmanager
    def tokentrail_on() -> Iterator[None]:
        import tokentrail

        with tokentrail.instrument_llamaindex():
            yield

    oi = _openinference_llamaindex()

    return Variants(
        framework="llamaindex",
        description="VectorStoreIndex (MockEmbedding, 8 docs) | query engine top-2 | MockLLM (usage reported), .query",
        call=call,
        setups={"bare": nullcontext, "tokentrail": tokentrail_on, **({"openinference": oi} if oi else {})},
        spans_per_call=5,  # tokentrail's: query, retrieval, embeddings, synthesize, text_completion
    )


def _openinference_llamaindex() -> Setup | None:
    try:
        from openinference.instrumentation.llama_index import LlamaIndexInstrumentor
    except ImportError:
        print("openinference-instrumentation-llama-index is not installed (pip install 'tokentrail[bench]'): skipped", file=sys.stderr)
        return None
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    @contextmanager
    def on() -> Iterator[None]:
        instrumentor = LlamaIndexInstrumentor()
        instrumentor.instrument(tracer_provider=provider)
        try:
            yield
        finally:
            instrumentor.uninstrument()
            exporter.clear()

    return on


FRAMEWORKS: dict[str, Callable[[Path], Variants]] = {
    "langchain": langchain_variants,
    "llamaindex": llamaindex_variants,
}


# -- the measurement ----------------------------------------------------------------------------


def _time(call: Callable[[int], Any], n: int, start: int) -> float:
    gc.collect()
    t0 = time.perf_counter()
    for i in range(start, start + n):
        call(i)
    return time.perf_counter() - t0


def measure(v: Variants, calls: int, rounds: int, seed: int) -> dict[str, float]:
    """Median µs per call of each variant over interleaved rounds."""
    per_round = max(1, calls // rounds)
    rng = random.Random(seed)
    spans = floor_spans(v.spans_per_call)

    def floor_call(i: int) -> Any:
        out = v.call(i)
        spans()
        return out

    variants: dict[str, tuple[Setup, Callable[[int], Any]]] = {name: (setup, v.call) for name, setup in v.setups.items()}
    variants["otel-floor"] = (nullcontext, floor_call)
    names = list(variants)
    for name in names:  # warm up: imports, tokenizer, price tables, caches
        setup, call = variants[name]
        with setup():
            _time(call, min(200, per_round), 0)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        rng.shuffle(names)
        for name in names:
            setup, call = variants[name]
            with setup():
                seconds = _time(call, per_round, r * per_round)
            samples[name].append(seconds / per_round * 1e6)
    order = ["bare", "otel-floor", "tokentrail", "openinference"]
    return {n: statistics.median(samples[n]) for n in order if n in samples}


def report(v: Variants, us: dict[str, float], calls: int, rounds: int) -> None:
    bare = us["bare"]
    print(f"\n{v.framework}: {v.description}")
    print(f"  {calls:,} calls per variant in {rounds} interleaved rounds, {v.spans_per_call} spans per call; median µs per call")
    print(f"  {'variant':<14}{'µs/call':>10}{'added µs':>11}")
    for name, value in us.items():
        added = "" if name == "bare" else f"{value - bare:>+11.0f}"
        print(f"  {name:<14}{value:>10.0f}{added}")
    tt_added = us["tokentrail"] - bare
    floor_added = us["otel-floor"] - bare
    ratio = tt_added / floor_added if floor_added > 0 else float("nan")
    verdict = "meets" if ratio <= 1.5 else "MISSES"
    print(f"  tokentrail adds {ratio:.2f}x what the OpenTelemetry floor adds ({verdict} the target of <= 1.50x)")
    if "openinference" in us:
        oi_added = us["openinference"] - bare
        ratio = tt_added / oi_added if oi_added > 0 else float("nan")
        verdict = "meets" if ratio <= 0.25 else "MISSES"
        print(f"  tokentrail adds {ratio:.2f}x what openinference adds ({verdict} the target of <= 0.25x)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls per variant (default 20000)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default 10)")
    parser.add_argument("--framework", choices=[*FRAMEWORKS, "all"], default="all")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.calls < args.rounds:
        parser.error(f"--calls ({args.calls}) must be at least --rounds ({args.rounds})")

    with tempfile.TemporaryDirectory(prefix="tokentrail-bench-") as tmp:
        import tokentrail

        home = Path(tmp)
        rt = tokentrail.configure(home=home, project="bench")
        selected = list(FRAMEWORKS) if args.framework == "all" else [args.framework]
        for name in selected:
            v = FRAMEWORKS[name](home)
            us = measure(v, args.calls, args.rounds, args.seed)
            report(v, us, args.calls, args.rounds)
        rt.flush()
        spooled = sum(1 for f in (home / "spool").rglob("*") if f.is_file()) if (home / "spool").exists() else 0
        print(f"\ntokentrail exported to {spooled} spool file(s) in {home} (embedded store spool)")
        rt.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
