"""`tokentrail otel attach | backfill` (issue 13: the SQL is interop/collector.py; the subparser is added in cli/parser.py)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: Any, common: Any) -> None:
    p = sub.add_parser("otel", parents=[common], help="price the OpenTelemetry Collector's otel_traces into tokentrail.spans")
    osub = p.add_subparsers(dest="otel_command", metavar="ACTION")
    osub.required = True
    for name, text in (("attach", "create the materialized view otel_traces -> tokentrail.spans (and its price table)"),
                       ("backfill", "insert rows for spans already in otel_traces")):
        q = osub.add_parser(name, parents=[common], help=text)
        q.add_argument("--table", default="otel.otel_traces", help="the Collector's traces table (default otel.otel_traces)")
        if name == "backfill":
            q.add_argument("--since", default="30d", help="how far back: 30d, 12h, 90m (default 30d)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, console: Any) -> int:
    from .. import runtime
    from ..interop import collector
    from ..store import open_store

    if args.otel_command == "backfill":
        collector.parse_since(args.since)  # a bad value: one line, before connecting
    collector.check_table(args.table)
    rt = runtime.configure(config_file=args.config)
    try:
        with open_store(rt.settings) as store:
            if args.otel_command == "attach":
                done: dict[str, Any] = collector.attach(store, rt, args.table)
            else:
                done = {"source": args.table, "inserted": collector.backfill(store, rt, args.table, args.since)}
    finally:
        rt.shutdown()
    console.print(json.dumps(done), markup=False, highlight=False)
    return 0
