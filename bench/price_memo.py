"""The price memo (tokentrail/price_memo.py) with thousands of model names: N distinct names
(default 5,000: dated snapshots of real models, fine-tune names and names genai-prices does
not know) priced once each by a PriceBook that remembers plans in a home, beside the same
PriceBook without a memo (the floor) in the same run; then a new PriceBook on that home (as a
new process would) prices them all again from the memo. Also the memo file's size and the
time until its background writes have settled.

    .venv/bin/python bench/price_memo.py [--names 5000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tokentrail.pricing import PriceBook  # noqa: E402
from tokentrail.usage import Usage  # noqa: E402

WHEN = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
BASES = [("gpt-4o", "openai"), ("gpt-4.1-mini", "openai"), ("claude-sonnet-4-5", "anthropic"), ("gemini-2.5-flash", "google")]


def names(n: int) -> list[tuple[str, str]]:
    out = []
    for i in range(n):
        base, provider = BASES[i % len(BASES)]
        kind = i % 3
        if kind == 0:
            out.append((f"{base}-2026-{1 + i % 12:02d}-{1 + i % 28:02d}-v{i}", provider))  # a dated snapshot
        elif kind == 1:
            out.append((f"ft:{base}:acme:{i}", provider))  # a fine-tune name
        else:
            out.append((f"acme-internal-{i}", provider))  # unknown: no price, remembered too
    return out


def settle() -> float:
    t = time.perf_counter()
    for th in list(threading.enumerate()):
        if th.name == "tokentrail-price-memo":
            th.join()
    return time.perf_counter() - t


def run(book: PriceBook, todo: list[tuple[str, str]]) -> float:
    u = Usage(1200, 300, cache_read_tokens=200)
    t = time.perf_counter()
    for model, provider in todo:
        book.cost(u, model, provider, WHEN)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--names", type=int, default=5000)
    args = ap.parse_args()
    todo = names(args.names)
    PriceBook().preload()
    run(PriceBook(), todo[:50])  # genai-prices imported and warm for both
    floor = run(PriceBook(), todo)
    home = Path(tempfile.mkdtemp(prefix="tt-memo-"))
    book = PriceBook(memo_dir=home)
    first = run(book, todo)
    settled = settle()
    size = (home / "cache" / "prices.json").stat().st_size
    t = time.perf_counter()
    again = PriceBook(memo_dir=home)
    load = time.perf_counter() - t
    second = run(again, todo)
    print(f"{args.names:,} names, each priced once")
    print(f"  no memo (floor):                 {floor:.3f} s")
    print(f"  with the memo, first process:    {first:.3f} s (+{settled:.3f} s until its writes settled), file {size / 1e6:.1f} MB")
    print(f"  a new process: open the memo     {load:.3f} s, price them all {second:.3f} s")


if __name__ == "__main__":
    main()
