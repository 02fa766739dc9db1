"""The command line: one sub-command a module (sql, report, prices, ingest, status, demo,
dashboard, budgets); `--config` before or after the command."""

from __future__ import annotations

import argparse

from ..version import VERSION
from . import budgets, dashboard, demo, ingest, prices, report, sql, status
from .common import Parser


def port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not between 1 and 65535")
    return port


def positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} must be at least 1")
    return n


def build_parser() -> argparse.ArgumentParser:
    from ..queries import GROUP_BY

    # --config works before or after the command. SUPPRESS: a sub-command does not reset it (the
    # action is shared by every parser, so no set_defaults here; main() fills in None)
    common = Parser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="tokentrail.toml to read")

    parser = Parser(
        prog="tokentrail",
        description="Know, cap and cut what LLM applications spend.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"tokentrail {VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    p = sub.add_parser("sql", parents=[common], help="run read-only SQL on the store", description="Run read-only SQL on the store (tables tokentrail.spans, tokentrail.budget_events).")
    p.add_argument("query", help='the SQL, e.g. "SELECT request_model, sum(cost_usd) FROM tokentrail.spans GROUP BY 1"; - reads stdin')
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=sql.run)

    p = sub.add_parser("report", parents=[common], help="spend and tokens by model, user, team, ...", description="Model calls, tokens and spend, grouped.")
    p.add_argument("--by", choices=list(GROUP_BY), default="model")
    p.add_argument("--since", metavar="WHEN", help="7d, 24h, 30m or a date (2026-01-31); default: all time")
    p.add_argument("--until", metavar="WHEN", help="same forms as --since")
    for flag, help_ in (
        ("--project", "only this project (repeatable)"),
        ("--environment", "only this environment (repeatable)"),
        ("--team", "only this team (repeatable)"),
        ("--feature", "only this feature (repeatable)"),
        ("--user", "only this user id (repeatable)"),
        ("--model", "only this requested model (repeatable)"),
        ("--provider", "only this provider (repeatable)"),
    ):
        p.add_argument(flag, action="append", metavar="NAME", help=help_)
    p.add_argument("--limit", type=positive, help="at most this many rows")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=report.run)

    p = sub.add_parser("prices", parents=[common], help="a model's prices (tiers, fees, source, version); `prices sync` stores them")
    p.add_argument("model")
    p.add_argument("--provider", help="openai, anthropic, gcp.gemini, aws.bedrock, ... (default: inferred)")
    p.add_argument("--at", metavar="DATE", help="price valid at this date (default now)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--force", action="store_true", help="with sync: store the rows again")
    p.set_defaults(func=prices.run)

    p = sub.add_parser("reprice", parents=[common], help="the same usage at other prices: the difference per model, user, feature")
    p.add_argument("--since", metavar="WHEN", default="30d", help="7d, 30d or a date (default 30d)")
    p.add_argument("--until", metavar="WHEN", help="same forms as --since (default now)")
    p.add_argument("--prices", default="current", metavar="current|FILE", help="today's prices, or a TOML file of [prices.\"<model>\"] tables")
    p.add_argument("--model", help="only this model")
    p.add_argument("--by", choices=("model", "user", "feature"), help="one grouping (default: all three)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=prices.cmd_reprice)

    p = sub.add_parser("ingest", parents=[common], help="drain the spool into the store now")
    p.add_argument("--retry-rejected", action="store_true", help="first put the files set aside in spool/rejected back")
    p.set_defaults(func=ingest.run)

    from .otel import add_parser as add_otel  # tokentrail otel attach|backfill

    add_otel(sub, common)

    p = sub.add_parser("status", parents=[common], help="store reachable, spool depth, set-aside files, lost spans, export errors")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the store (default 5)")
    p.set_defaults(func=status.run)

    dash = Parser(add_help=False)
    dash.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    dash.add_argument("--port", type=port, default=8501)
    dash.add_argument("--headless", action="store_true", help="do not open a browser")

    p = sub.add_parser("demo", parents=[common, dash], help="realistic traffic through LangChain (and LlamaIndex) into the store")
    p.add_argument("--days", type=positive, default=14, help="days of history (default 14)")
    p.add_argument("--calls", type=positive, default=1500, help="about this many model calls (default 1500)")
    p.add_argument("--seed", type=int, default=7, help="random seed (same seed, same traffic)")
    p.add_argument("--no-dashboard", action="store_true", help="exit after the traffic instead of starting the dashboard")
    p.set_defaults(func=demo.run)

    p = sub.add_parser("dashboard", parents=[common, dash], help="the Streamlit dashboard")
    p.set_defaults(func=dashboard.run)

    p = sub.add_parser("budgets", parents=[common], help="each budget: spent, limit, forecast")
    p.set_defaults(func=budgets.run)
    return parser
