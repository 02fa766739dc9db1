"""Re-pricing history in SQL: N spans (default 10,000,000) re-priced at today's prices through
the price table (`tokentrail reprice`'s query, which sums the usage by model, price and
long-context step first and prices the sums), beside the row-level query it replaced (every
span priced, then summed: the spans_repriced view's SQL) and the floor (a plain sum of the
stored cost) over the same spans in the same run, and checks both give the same dollars.

    .venv/bin/python bench/reprice.py                 # 10,000,000 spans, embedded store
    .venv/bin/python bench/reprice.py --spans 1000000

The spans are made by ClickHouse itself (INSERT ... SELECT FROM numbers(N)) in the embedded
store: 30 days, a mix of models with their genai-prices price ids (a tier, cache reads and
writes, one-hour writes, web searches, long-context calls above 200k tokens), 2,000 users and
12 features. Each figure is the best of --runs warm runs. Target: under 5 s for 10M spans.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tokentrail.config import resolve  # noqa: E402
from tokentrail.pricing import PriceBook  # noqa: E402
from tokentrail.pricing.ids import genai_version  # noqa: E402
from tokentrail.pricing.table import sync  # noqa: E402
from tokentrail.queries.reprice import GROUPS, reprice, reprice_sql  # noqa: E402
from tokentrail.store import open_store  # noqa: E402
from tokentrail.usage import Usage  # noqa: E402

NOW = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
MODELS = [
    ("gpt-4o", "openai", ""), ("gpt-5", "openai", "flex"), ("gpt-4.1-mini", "openai", ""),
    ("claude-sonnet-4-5", "anthropic", ""), ("claude-haiku-4-5", "anthropic", "batch"), ("gemini-2.5-pro", "google", ""),
]  # fmt: skip


def fill(store: object, n: int, book: PriceBook) -> None:
    ids = []
    for model, provider, tier in MODELS:
        ids.append(
            book.cost(
                Usage(1000, 100, service_tier=tier), model, provider, NOW - timedelta(days=1)
            ).price_id
        )
    models = "[" + ", ".join(f"'{m}'" for m, _, _ in MODELS) + "]"
    providers = "[" + ", ".join(f"'{p}'" for _, p, _ in MODELS) + "]"
    tiers = "[" + ", ".join(f"'{t}'" for _, _, t in MODELS) + "]"
    pids = "[" + ", ".join(f"'{i}'" for i in ids) + "]"
    sql = f"""INSERT INTO tokentrail.spans (timestamp, trace_id, span_id, name, operation, provider, request_model,
        response_model, user_id, feature, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
        cache_write_1h_tokens, web_search_requests, service_tier, cost_usd, cost_status, price_id, price_version)
    SELECT toDateTime64('{(NOW - timedelta(days=30)):%Y-%m-%d %H:%M:%S}', 6, 'UTC') + toIntervalSecond(number * 2592000 / {n}),
        hex(number), hex(number), 'chat', 'chat', {providers}[m], {models}[m], {models}[m],
        concat('user-', toString(number % 2000)), concat('feature-', toString(number % 12)),
        inp, 50 + number % 2000, cr, cw, cw1h, if(number % 50 = 0, 1 + number % 3, 0), {tiers}[m],
        toDecimal64(inp * 3 / 1000000, 9), 'priced', {pids}[m], 'genai-prices'
    FROM (SELECT number, 1 + number % {len(MODELS)} AS m,
        if(number % 97 = 0, 210000 + number % 50000, 500 + (number * 7919) % 20000) AS inp,
        if(number % 3 = 0, intDiv(inp, 2), 0) AS cr, if(number % 11 = 0, intDiv(inp, 4), 0) AS cw,
        if(number % 22 = 0, intDiv(inp, 8), 0) AS cw1h
        FROM numbers({n}))"""
    store.client.command(sql)  # type: ignore[attr-defined]


def best(runs: int, fn: object) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--row-runs", type=int, default=1, help="runs of the row-level query (slow)")
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="tt-reprice-")
    os.environ["TOKENTRAIL_HOME"] = home
    book = PriceBook()
    with open_store(resolve()) as store:
        t = time.perf_counter()
        fill(store, args.spans, book)
        print(f"filled {args.spans:,} spans in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        sync(store, book, NOW)
        print(f"prices sync (genai-prices rows): {time.perf_counter() - t:.2f} s")
        since, until = NOW - timedelta(days=31), NOW
        floor = best(args.runs, lambda: store.rows(
            "SELECT if(response_model != '', response_model, request_model) AS g, count(), sum(cost_usd) FROM tokentrail.spans "
            "WHERE timestamp >= {s:DateTime64(6, 'UTC')} AND timestamp < {u:DateTime64(6, 'UTC')} GROUP BY g",
            {"s": since, "u": until}))  # fmt: skip
        rows: list = []

        def run() -> None:
            rows[:] = reprice(store, book, since=since, until=until, now=NOW, by="model")

        took = best(args.runs, run)
        row_level: list = []
        row_sql = f"""SELECT {GROUPS["model"]} AS g, count(), sum(repriced_cost_usd) FROM ({
            reprice_sql(
                "tokentrail.spans",
                "tokentrail.prices",
                by_model=False,
                where="timestamp >= {since:DateTime64(6, 'UTC')} AND timestamp < {until:DateTime64(6, 'UTC')}",
            )
        }) GROUP BY g"""
        params = {"versions": [genai_version()], "at": NOW, "since": since, "until": until}
        took_rows = best(
            args.row_runs, lambda: row_level.__setitem__(slice(None), store.rows(row_sql, params))
        )
        spans = sum(r.spans for r in rows)
        unpriced = sum(r.unpriced for r in rows)
        print(f"floor (sum of the stored cost by model): {floor:.2f} s")
        print(f"reprice {spans:,} spans at today's prices by model: {took:.2f} s ({spans / took / 1e6:.1f} M spans/s), "
              f"{took / floor:.1f}x the floor; {unpriced} without a price; target < 5 s: {'met' if took < 5 else 'NOT met'}")  # fmt: skip
        print(
            f"row-level (each span priced, then summed; before): {took_rows:.2f} s; aggregated first (after): {took:.2f} s, "
            f"{took_rows / took:.1f}x faster"
        )
        same = {str(g): (int(n), c) for g, n, c in row_level} == {
            r.group: (r.spans, r.repriced_usd) for r in rows
        }
        print(
            f"same dollars to the nano-dollar, row-level vs aggregated: {'yes' if same else 'NO'}"
        )
        for r in rows:
            print(
                f"  {r.group:<22} {r.spans:>10,} charged ${r.charged_usd:>14,.2f} re-priced ${r.repriced_usd:>14,.2f}"
            )


if __name__ == "__main__":
    main()
