"""`tokentrail report`: model calls, tokens and spend, grouped by one dimension."""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal

from rich.console import Console
from rich.table import Table

from . import common
from .common import EXIT_OK
from .output import usd, write_csv, write_json

_REPORT_FIELDS = (
    "calls",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_usd",
    "unpriced_calls",
    "errors",
)


def run(args: argparse.Namespace, console: Console) -> int:
    from ..queries import report, totals

    filters = common.filters(args)
    settings = common.settings(args)
    cur = settings.currency if settings.currency is not None and settings.currency.code != "USD" else None
    with common.open_store(settings) as store:
        rows = report(store, args.by, filters, limit=args.limit)
        total = totals(store, filters)
        # issue 14: the cost in the configured currency, each day at its rate (MissingRate: one line)
        shown = None
        if cur is not None:
            from ..queries.currency import spend_in_currency

            shown = spend_in_currency(store, filters, currency=cur, by=args.by)
    key_name = args.by
    money = f"cost_{cur.code.lower()}" if cur is not None else ""

    def in_cur(key: str) -> dict[str, object]:
        return {money: shown.by_key.get(key)} if shown is not None else {}

    if args.format == "json":
        write_json(
            {
                "by": args.by,
                "filters": filters.describe(),
                "rows": [{key_name: r.key, **{f: getattr(r, f) for f in _REPORT_FIELDS}, **in_cur(r.key)} for r in rows],
                "total": {**{f: getattr(total, f) for f in _REPORT_FIELDS}, **({money: shown.total} if shown is not None else {})},
                **({"currency": cur.code} if cur is not None else {}),
            },
            sys.stdout,
        )
        return EXIT_OK
    if args.format == "csv":
        extra = [money] if shown is not None else []
        write_csv([key_name, *_REPORT_FIELDS, *extra], [[r.key, *(getattr(r, f) for f in _REPORT_FIELDS), *in_cur(r.key).values()] for r in rows], sys.stdout)
        return EXIT_OK

    table = Table(title=f"Spend by {args.by} ({filters.describe()})", show_footer=True, header_style="bold")
    cost_total = total.cost_usd or Decimal(0)

    def share(c: Decimal | None) -> str:
        return f"{(c / cost_total * 100):.1f}%" if c is not None and cost_total > 0 else ""

    table.add_column(args.by, footer="total")
    for name, footer in (
        ("calls", f"{total.calls:,}"),
        ("input tok", f"{total.input_tokens:,}"),
        ("output tok", f"{total.output_tokens:,}"),
        ("cache read", f"{total.cache_read_tokens:,}"),
        ("cache write", f"{total.cache_write_tokens:,}"),
        ("reasoning", f"{total.reasoning_tokens:,}"),
        ("cost", usd(total.cost_usd)),
        *([(f"cost {cur.code}", cur.format(shown.total))] if cur is not None and shown is not None else []),
        ("share", "100%" if total.cost_usd else ""),
        ("unpriced", f"{total.unpriced_calls:,}"),
        ("errors", f"{total.errors:,}"),
    ):
        table.add_column(name, footer=footer, justify="right")
    for r in rows:
        table.add_row(
            r.key or "(unset)",
            f"{r.calls:,}",
            f"{r.input_tokens:,}",
            f"{r.output_tokens:,}",
            f"{r.cache_read_tokens:,}",
            f"{r.cache_write_tokens:,}",
            f"{r.reasoning_tokens:,}",
            usd(r.cost_usd),
            *([cur.format(shown.by_key.get(r.key))] if cur is not None and shown is not None else []),
            share(r.cost_usd),
            f"{r.unpriced_calls:,}",
            f"{r.errors:,}",
        )
    console.print(table)
    if cur is not None:
        console.print(f"cost {cur.code}: each day's USD at that day's rate ({cur.source}); the store is in USD", style="dim")
    if not rows:
        console.print("no model calls match; run `tokentrail demo --no-dashboard` for sample data", style="dim")
    elif total.unpriced_calls:
        console.print(
            f"{total.unpriced_calls:,} call(s) have no known price and are not in the cost; "
            'add [prices."<model>"] to tokentrail.toml to price them',
            style="yellow",
        )
    return EXIT_OK
