"""`tokentrail status`: store reachable, spool depth, set-aside files, lost spans, export errors."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone

from rich.console import Console
from rich.table import Table

from . import common
from .common import EXIT_OK, EXIT_RUNTIME
from .ingest import RETRY_HINT
from .output import write_json


def run(args: argparse.Namespace, console: Console) -> int:
    from ..config import format_size as _bytes
    from ..queries.status import gather

    settings = common.settings(args)
    st = gather(settings, timeout_s=args.timeout)
    if args.format == "json":
        write_json(st.to_json(), sys.stdout)
        return EXIT_OK if st.store.reachable else EXIT_RUNTIME
    table = Table(title=f"tokentrail status ({settings.home})", show_header=False, header_style="bold")
    table.add_column("", style="bold")
    table.add_column("", overflow="fold")
    s = st.store
    if s.reachable:
        table.add_row("store", f"{s.where}: reachable, {s.spans or 0:,} spans, {s.budget_events or 0:,} budget events")
    else:
        table.add_row("store", f"{s.where}: UNREACHABLE ({s.why})")
    d = st.spool
    waiting = f"{d.files:,} file(s), {_bytes(d.bytes)} of the {_bytes(settings.spool_max_bytes)} cap"
    if d.oldest_ns is not None:
        oldest = datetime.fromtimestamp(d.oldest_ns / 1e9, tz=timezone.utc)
        waiting += f", oldest {oldest:%Y-%m-%d %H:%M:%S} UTC; `tokentrail ingest` stores them now"
    table.add_row("spool", waiting if d.files else f"empty ({settings.spool_dir})")
    if st.rejected:
        lines = [f"{r.path} ({_bytes(r.bytes)}): {r.error[:160]}" for r in st.rejected]
        table.add_row("set aside", "\n".join([f"{len(st.rejected)} file(s) the store refused:", *lines, RETRY_HINT]))
    else:
        table.add_row("set aside", "none")
    lost = st.lost
    if lost.rows:
        when = f" between {lost.first:%Y-%m-%d %H:%M} and {lost.last:%Y-%m-%d %H:%M} UTC" if lost.first and lost.last else ""
        table.add_row(
            "lost",
            f"{lost.spans:,} spans ({lost.model_spans:,} model calls, ${lost.cost_usd} known cost, "
            f"{lost.unpriced_model_spans:,} unpriced) and {lost.rows - lost.spans:,} other rows{when}; "
            f"last: {lost.last_reason} ({lost.last_message[:160]})",
        )
    else:
        table.add_row("lost", "nothing")
    err = st.last_error
    if err is not None:
        alive = {True: "running", False: "exited", None: "on another host"}[err.get("alive")]
        state = f"failing since {err['failing_since']}" if err.get("failing_since") else f"recovered, last ok {err.get('last_ok_at')}"
        table.add_row("last export error", f"{err.get('last_error_at')} (pid {err.get('pid')}, {alive}, {state}): {err['last_error']}")
    else:
        table.add_row("last export error", "none recorded")
    console.print(table)
    return EXIT_OK if s.reachable else EXIT_RUNTIME
