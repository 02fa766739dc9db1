"""`tokentrail prices MODEL`: the price that would be used for a model, and its source."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table

from .. import clock
from . import common
from .common import EXIT_OK, EXIT_RUNTIME
from .output import err, write_json

_PRICE_ROWS = (
    ("input_per_mtok", "input"),
    ("output_per_mtok", "output"),
    ("cache_read_per_mtok", "cache read"),
    ("cache_write_per_mtok", "cache write"),
)


def run(args: argparse.Namespace, console: Console) -> int:
    from ..pricing import PriceBook

    when = clock.now() if args.at is None else common.flag_time(args.at, "--at")
    settings = common.settings(args)
    info = PriceBook(settings.prices).describe(args.model, args.provider, when)
    priced = info.get("status") in ("priced", "override")
    if args.format == "json":
        write_json(info, sys.stdout)
        return EXIT_OK if priced else EXIT_RUNTIME
    table = Table(title=f"{args.model} at {when:%Y-%m-%d %H:%M} UTC", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("status", str(info.get("status", "")))
    table.add_row("source", str(info.get("source") or "-"))
    if info.get("matched_model"):
        table.add_row("matched", f"{info.get('matched_provider') or ''}/{info['matched_model']}".lstrip("/"))
    for key, label in _PRICE_ROWS:
        v = info.get(key)
        table.add_row(f"{label} $/MTok", "-" if v is None else f"${v}")
    for key, tiers in (info.get("tiers") or {}).items():
        label = dict(_PRICE_ROWS).get(key, key)
        for start, price in tiers:
            table.add_row(f"{label} above {start:,} tok", f"${price} /MTok")
    for key, v in (info.get("other") or {}).items():
        table.add_row(key, f"${v}")
    console.print(table)
    if not priced:
        hint = f'add [prices."{args.model}"] with input_per_mtok and output_per_mtok to tokentrail.toml'
        err(f"prices: no price known for {args.model!r}{f' (provider {args.provider})' if args.provider else ''}; {hint}")
        return EXIT_RUNTIME
    return EXIT_OK
