"""Spans made and stored under load, beside OpenTelemetry's default BatchSpanProcessor in the same run.

    .venv/bin/python bench/ledger_load.py              # the full run (~4 minutes)
    .venv/bin/python bench/ledger_load.py --quick      # every scenario, scaled down (~1 minute)

Scenarios, each run twice in a fresh process (the same exporter, embedded store or server, the
same LangChain handler and offline model of known cost; only the span processor differs):

    threads     32 threads calling a chat model through the LangChain handler, flat out, 10 s
    burst       100,000 model-call spans from 32 threads at once (the tracer directly)
    hung        a ClickHouse URL whose socket accepts and never answers, 60 s at 1,000 calls/s

    tokentrail  tokentrail's LedgerSpanProcessor (spills to the spool when the queue is full)
    otel-bsp    OpenTelemetry's BatchSpanProcessor with its default settings (queue 2,048)

Made = spans the application ended; stored = rows in tokentrail.spans once the spool is
ingested (for `hung`, the embedded engine at the same home plays the server that came back);
lost = made - stored; "$ ok" says whether the stored cost is exactly stored x unit cost. Peak
RSS is the application process's own (the ingest runs in the parent).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

UNIT_MODEL = "ledger-unit"
PRICES = {UNIT_MODEL: {"input_per_mtok": 1, "output_per_mtok": 2}}
UNIT_COST = Decimal("0.00002")  # 10 input tokens at $1/M + 5 output tokens at $2/M
MODES = ("tokentrail", "otel-bsp")


# -- the application (a child process) ---------------------------------------------------------


def _unit_model() -> Any:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import AIMessage, BaseMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    class UnitModel(BaseChatModel):
        @property
        def _llm_type(self) -> str:
            return "unit"

        def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any) -> ChatResult:
            usage = {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
            msg = AIMessage("ok", usage_metadata=usage, response_metadata={"model_name": UNIT_MODEL})  # type: ignore[arg-type]
            return ChatResult(generations=[ChatGeneration(message=msg)])

        def _get_ls_params(self, stop: Any = None, **kwargs: Any) -> Any:
            params = super()._get_ls_params(stop=stop, **kwargs)
            params["ls_model_name"] = UNIT_MODEL
            params["ls_provider"] = "openai"
            return params

    return UnitModel()


def _configure(mode: str, home: str, url: str | None) -> Any:
    from tokentrail import runtime

    rt = runtime.configure(home=home, clickhouse_url=url, project="bench", prices=PRICES)
    if mode == "otel-bsp":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from tokentrail.exporters.clickhouse import ClickHouseSpanExporter

        rt.provider.shutdown()  # tokentrail's own processor and exporter, replaced by:
        provider = TracerProvider(resource=rt.provider.resource)
        rt.exporter = ClickHouseSpanExporter(rt.settings)
        rt.processor = BatchSpanProcessor(rt.exporter)  # the SDK's defaults: queue 2048, batch 512, 5 s
        provider.add_span_processor(rt.processor)
        rt.provider, rt.tracer = provider, provider.get_tracer("tokentrail")
    return rt


def _threads(n: int, work: Any) -> None:
    start = threading.Barrier(n)

    def run(k: int) -> None:
        start.wait()
        work(k)

    pool = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def _peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited through exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(scenario: str, mode: str, home: str, url: str | None, scale: float) -> dict[str, Any]:
    import tokentrail

    rt = _configure(mode, home, url)
    counts = [0] * 64
    t0 = time.perf_counter()
    if scenario in ("threads", "hung"):
        model, handler = _unit_model(), tokentrail.langchain_handler()
        if scenario == "threads":
            threads, seconds, per_thread_rate = 32, 10 * scale, None
        else:
            threads, seconds, per_thread_rate = 4, 60 * scale, 250.0  # 1,000 calls/s in all
        end = time.monotonic() + seconds

        def calls(k: int) -> None:
            start = time.monotonic()
            while time.monotonic() < end:
                model.invoke("hi", config={"callbacks": [handler]})
                counts[k] += 1
                if per_thread_rate is not None:  # paced: sleep until this call's slot
                    ahead = start + counts[k] / per_thread_rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)

        _threads(threads, calls)
    else:
        total, threads = int(100_000 * scale), 32
        attrs = {
            "gen_ai.operation.name": "chat", "gen_ai.request.model": UNIT_MODEL, "gen_ai.provider.name": "openai",
            "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5,
            "tokentrail.cost.usd": str(UNIT_COST), "tokentrail.cost.status": "override",
        }  # fmt: skip

        def spans(k: int) -> None:
            for _ in range(total // threads + (k < total % threads)):
                rt.tracer.start_span(f"chat {UNIT_MODEL}", attributes=attrs).end()
                counts[k] += 1

        _threads(threads, spans)
    made_s = time.perf_counter() - t0
    rt.flush()
    rt.shutdown()
    return {
        "made": sum(counts),
        "seconds": made_s,
        "flush_s": time.perf_counter() - t0 - made_s,
        "peak_rss_mib": _peak_rss_mib(),
        "spilled": getattr(rt.processor, "spilled_spans", 0),
    }


# -- the parent --------------------------------------------------------------------------------


def _hung_socket() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(4096)
    return s


def run_one(scenario: str, mode: str, scale: float) -> dict[str, Any]:
    from tokentrail.config import resolve
    from tokentrail.store import open_store

    home = tempfile.mkdtemp(prefix=f"tt-bench-{scenario}-{mode}-")
    hung = _hung_socket() if scenario == "hung" else None
    url = f"http://default:@127.0.0.1:{hung.getsockname()[1]}" if hung else None
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENTRAIL_")}
    cmd = [sys.executable, __file__, "--child", scenario, "--mode", mode, "--home", home, "--scale", str(scale)]
    if url:
        cmd += ["--url", url]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if hung is not None:
        hung.close()
    if out.returncode != 0:
        raise SystemExit(f"{scenario}/{mode} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["otel_drop_logs"] = out.stderr.count("Queue full, dropping")
    with open_store(resolve(home=home)) as store:  # the store that is (or came back) reachable
        [(stored, cost)] = store.rows("SELECT count(), sum(cost_usd) FROM tokentrail.spans WHERE operation = 'chat'")
        [(lost_rec,)] = store.rows("SELECT sum(spans) FROM tokentrail.lost_spans")
    result.update(stored=int(stored), cost_ok=Decimal(cost or 0) == UNIT_COST * int(stored), recorded_lost=int(lost_rec or 0))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="every scenario at a tenth of its size / length")
    ap.add_argument("--scenario", choices=("threads", "burst", "hung"), action="append")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--home", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    ap.add_argument("--scale", type=float, default=1.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.mode, args.home, args.url, args.scale)))
        return
    scale = 0.1 if args.quick else 1.0
    labels = {
        "threads": f"32 threads x {10 * scale:g} s (LangChain)",
        "burst": f"{int(100_000 * scale):,}-span burst, 32 threads",
        "hung": f"hung server {60 * scale:g} s at 1,000 calls/s",
    }
    print(f"{'scenario':36} {'processor':11} {'made':>9} {'stored':>9} {'lost':>8} {'lost %':>7} {'$ ok':>5} {'peak RSS':>9} {'made in':>8} {'flush':>7}")
    for scenario in args.scenario or ("threads", "burst", "hung"):
        for mode in MODES:
            r = run_one(scenario, mode, scale)
            lost = r["made"] - r["stored"]
            print(
                f"{labels[scenario]:36} {mode:11} {r['made']:>9,} {r['stored']:>9,} {lost:>8,} "
                f"{lost / max(r['made'], 1):>7.1%} {'yes' if r['cost_ok'] else 'NO':>5} {r['peak_rss_mib']:>7.0f} MiB "
                f"{r['seconds']:>7.1f}s {r['flush_s']:>6.1f}s",
                flush=True,
            )
            if mode == "tokentrail" and (r["spilled"] or r["recorded_lost"]):
                print(f"{'':36} {'':11} spilled to the spool by callers: {r['spilled']:,} spans; recorded lost: {r['recorded_lost']:,}")


if __name__ == "__main__":
    main()
