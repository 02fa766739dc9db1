"""What `tokentrail otel attach`'s materialized view adds to the Collector's inserts.

    .venv/bin/python bench/interop_collector_view.py                  # 10 batches of 1000 spans
    .venv/bin/python bench/interop_collector_view.py --batches 20 --rows 5000

The server is the chdb package's clickhouse-local listening on loopback (tests/chserver.py).
`otel_traces` has the Collector's default schema (tests/test_interop_collector.py); a batch is
as the Collector's batch processor sends it: `--rows` spans, a fifth of them model calls
(OpenLLMetry-shaped, models from genai-prices' catalogue), the rest HTTP spans. Variants,
interleaved, median ms per batch:

    floor   INSERT into otel_traces, no view
    view    the same with otel_traces_to_spans attached (prices joined from tokentrail.prices,
            its thousands of rows grouped per key, built once per inserted block)
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

MODELS = [("gpt-4o-mini-2024-07-18", "openai"), ("gpt-4o", "openai"), ("claude-3-5-haiku-20241022", "anthropic"),
          ("claude-sonnet-4-6", "anthropic"), ("deepseek-v4-flash", "deepseek")]


def batch(rows: int, start: int, when: datetime) -> list[list[Any]]:
    out = []
    for i in range(start, start + rows):
        if i % 5 == 0:
            model, provider = MODELS[i % len(MODELS)]
            attrs = {"traceloop.workflow.name": "w", "gen_ai.provider.name": provider, "gen_ai.operation.name": "chat",
                     "gen_ai.request.model": model, "gen_ai.response.model": model,
                     "gen_ai.usage.input_tokens": str(100 + i % 900), "gen_ai.usage.output_tokens": str(10 + i % 90)}
        else:
            attrs = {"http.request.method": "GET", "url.full": f"https://api.example.com/items/{i}", "http.response.status_code": "200"}
        out.append([when + timedelta(milliseconds=i), f"{i:032x}", f"{i:016x}", "", f"span {i}", "Internal", "shop",
                    {"service.name": "shop"}, "bench", attrs, 1_500_000, "Unset"])
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--rows", type=int, default=1000)
    args = ap.parse_args(argv)
    from chserver import ClickHouseServer
    from test_interop_collector import COLS, OTEL_TRACES

    import tokentrail
    from tokentrail.interop import collector
    from tokentrail.store import open_store

    with tempfile.TemporaryDirectory() as tmp, ClickHouseServer(Path(tmp) / "ch") as server:
        rt = tokentrail.configure(home=Path(tmp) / "home", clickhouse_url=server.url_for("tokentrail"), project="bench")
        with open_store(rt.settings) as store:
            store.client.command("CREATE DATABASE IF NOT EXISTS otel")
            for db in ("plain", "viewed"):
                store.client.command(OTEL_TRACES.replace("otel.otel_traces", f"otel.{db}"))
            t0 = time.perf_counter()
            collector.attach(store, rt, "otel.viewed")
            attach_s = time.perf_counter() - t0
            prices = store.rows(f"SELECT count() FROM {store.database}.prices")[0][0]
            when = datetime(2026, 8, 1, 12, tzinfo=timezone.utc)
            ms: dict[str, list[float]] = {"floor": [], "view": []}
            for b in range(args.batches):
                rows = batch(args.rows, b * args.rows, when)
                order = [("floor", "otel.plain"), ("view", "otel.viewed")]
                random.shuffle(order)
                for name, table in order:
                    t0 = time.perf_counter()
                    store.client.insert(table, rows, column_names=COLS)
                    ms[name].append((time.perf_counter() - t0) * 1000)
            copied = store.rows(f"SELECT count(), countIf(cost_usd IS NOT NULL) FROM {store.database}.spans")[0]
        rt.shutdown()
    floor, view = statistics.median(ms["floor"]), statistics.median(ms["view"])
    print(f"tokentrail.prices rows: {prices}; attach (sync + view): {attach_s:.2f} s")
    print(f"batches: {args.batches} x {args.rows} spans (a fifth model calls); ms per batch, median")
    print(f"floor  {floor:8.1f} ms   INSERT into otel_traces")
    print(f"view   {view:8.1f} ms   + otel_traces_to_spans")
    print(f"added  {view - floor:8.1f} ms per batch ({(view - floor) / args.rows * 1000:.1f} µs per span inserted)")
    print(f"rows the view wrote: {copied[0]} ({copied[1]} priced)")


if __name__ == "__main__":
    main()
