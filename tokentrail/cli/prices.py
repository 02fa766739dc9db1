"""`tokentrail prices MODEL`, `tokentrail prices sync` and `tokentrail reprice` (issue 14)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from .. import clock
from . import common, output
from .common import EXIT_OK, EXIT_RUNTIME

__all__ = ["run", "cmd_reprice", "cmd_sync"]

_PRICE_ROWS = (
    ("input_per_mtok", "input"),
    ("output_per_mtok", "output"),
    ("cache_read_per_mtok", "cache read"),
    ("cache_write_per_mtok", "cache write"),
    ("cache_write_1h_per_mtok", "cache write 1h"),
)
_FEE_ROWS = {"web_search_per_k": "web searches $/1,000", "request_per_k": "requests $/1,000", "request_usd": "per request $"}


def run(args: argparse.Namespace, console: Console) -> int:
    if args.model == "sync":
        return cmd_sync(args, console)
    from ..pricing import PriceBook

    when = clock.now() if args.at is None else common.flag_time(args.at, "--at")
    settings = common.settings(args)
    info = PriceBook(settings.prices).describe(args.model, args.provider, when)
    priced = info.get("status") in ("priced", "override")
    if args.format == "json":
        output.write_json(info, sys.stdout)
        return EXIT_OK if priced else EXIT_RUNTIME
    table = Table(title=f"{args.model} at {when:%Y-%m-%d %H:%M} UTC", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("status", str(info.get("status", "")))
    table.add_row("source", str(info.get("source") or "-"))
    table.add_row("version", str(info.get("version") or "-"))
    table.add_row("price id", str(info.get("price_id") or "-"))
    if info.get("matched_model"):
        table.add_row("matched", f"{info.get('matched_provider') or ''}/{info['matched_model']}".lstrip("/"))
    for key, label in _PRICE_ROWS:
        v = info.get(key)
        table.add_row(f"{label} $/MTok", "-" if v is None else f"${v}")
    for key, tiers in (info.get("tiers") or {}).items():
        label = dict(_PRICE_ROWS).get(key, key)
        for start, price in tiers:
            table.add_row(f"{label} above {start:,} tok", f"${price} /MTok")
    for key, v in (info.get("fees") or {}).items():
        table.add_row(_FEE_ROWS.get(key, key), f"${v}")
    for tier, prices in (info.get("service_tiers") or {}).items():
        shown = ", ".join(f"{k.removesuffix('_per_mtok')} ${v}" for k, v in prices.items() if k not in ("when", "tiers"))
        table.add_row(f"tier {tier}", f"{shown} /MTok" + (f" (when {prices['when']})" if prices.get("when") else ""))
    for c in info.get("conditions") or ():
        table.add_row("condition", str(c))
    for key, v in (info.get("other") or {}).items():
        table.add_row(key, f"${v}")
    console.print(table)
    if not priced:
        hint = f'add [prices."{args.model}"] with input_per_mtok and output_per_mtok to tokentrail.toml'
        output.err(f"prices: no price known for {args.model!r}{f' (provider {args.provider})' if args.provider else ''}; {hint}")
        return EXIT_RUNTIME
    return EXIT_OK


def cmd_sync(args: argparse.Namespace, console: Console) -> int:
    """Fill tokentrail.prices from the installed genai-prices (offline) and the overrides."""
    from ..pricing import PriceBook
    from ..pricing.table import sync
    from ..queries.reprice import create_view

    settings = common.settings(args)
    book = PriceBook(settings.prices)
    now = clock.now()
    with common.open_store(settings) as store:
        done = sync(store, book, now, force=getattr(args, "force", False))
        create_view(store, book, now)
        total = store.rows(f"SELECT version, count() FROM {store.table('prices')} FINAL GROUP BY version ORDER BY version")
    for version, n in done.items():
        console.print(f"prices: {n} rows of {version} stored")
    if not done:
        console.print("prices: up to date")
    for version, n in total:
        console.print(f"  {version}: {n} rows")
    return int(EXIT_OK)


def cmd_reprice(args: argparse.Namespace, console: Console) -> int:
    from ..pricing import PriceBook
    from ..queries.reprice import reprice

    settings = common.settings(args)
    now = clock.now()
    since = common.flag_time(args.since, "--since")
    until = now if args.until is None else common.flag_time(args.until, "--until")
    book = PriceBook(settings.prices)
    groups = [args.by] if args.by else ["model", "user", "feature"]
    out: dict[str, Any] = {}
    with common.open_store(settings) as store:
        for by in groups:
            out[by] = reprice(store, book, since=since, until=until, now=now, prices=args.prices, model=args.model, by=by)
    if args.format == "json":
        output.write_json(
            {by: [dict(group=r.group, spans=r.spans, charged_usd=r.charged_usd, repriced_usd=r.repriced_usd,
                       difference_usd=r.difference_usd, unpriced=r.unpriced) for r in rows] for by, rows in out.items()},
            sys.stdout,
        )  # fmt: skip
        return int(EXIT_OK)
    for by, rows in out.items():
        table = Table(title=f"Re-priced at {args.prices} prices, by {by} (as charged is unchanged)", header_style="bold")
        for col in (by, "spans", "as charged $", "re-priced $", "difference $", "no price"):
            table.add_column(col, justify="left" if col == by else "right")
        for r in rows:
            table.add_row(r.group or "-", str(r.spans), f"{r.charged_usd:f}", f"{r.repriced_usd:f}", f"{r.difference_usd:+f}", str(r.unpriced))
        console.print(table)
    return int(EXIT_OK)
