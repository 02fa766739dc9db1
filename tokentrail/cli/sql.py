"""`tokentrail sql`: read-only SQL on the store, as a table, CSV or JSON."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table

from . import common
from .common import EXIT_OK
from .output import cell, numeric, write_csv, write_json


def run(args: argparse.Namespace, console: Console) -> int:
    from ..queries import run_sql

    query = sys.stdin.read() if args.query == "-" else args.query
    settings = common.settings(args)
    with common.open_store(settings) as store:
        result = run_sql(store, query, readonly=True)
    if args.format == "json":
        write_json(result.records(), sys.stdout)
    elif args.format == "csv":
        write_csv(result.columns, result.rows, sys.stdout)
    else:
        table = Table(show_header=True, header_style="bold", show_lines=False)
        for name, type_name in zip(result.columns, result.types or [""] * len(result.columns), strict=False):
            table.add_column(name, justify="right" if numeric(type_name) else "left", overflow="fold")
        for r in result.rows:
            table.add_row(*(cell(v) for v in r))
        console.print(table)
        console.print(f"{len(result.rows)} row{'s' if len(result.rows) != 1 else ''}", style="dim")
    return EXIT_OK
