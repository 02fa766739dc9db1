"""`tokentrail demo`: realistic traffic through LangChain (and LlamaIndex) into the store, then a summary."""

from __future__ import annotations

import argparse
import importlib.util
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from .. import clock
from . import common
from .common import EXIT_OK, EXIT_RUNTIME
from .dashboard import run_dashboard
from .output import err, usd

if TYPE_CHECKING:
    from ..config import Settings
    from ..demo import DemoResult
    from ..queries import Totals


def run(args: argparse.Namespace, console: Console) -> int:
    if importlib.util.find_spec("langchain_core") is None:
        err("demo: langchain-core is not installed; pip install 'tokentrail[langchain]'")
        return EXIT_RUNTIME
    from .. import runtime
    from ..demo import run_demo
    from ..demo.budget_config import write_demo_config

    # the user's tokentrail.toml (--config, TOKENTRAIL_CONFIG, working directory) wins; without
    # one, the demo's own budgets, written to the home, so there is something to see
    demo_config: Path | None = None
    earlier: Totals | None = None
    settings = common.settings(args)
    if settings.config_file is None:
        earlier = _earlier_spend(settings, args.days)
        demo_config = write_demo_config(settings.home, days=args.days, calls=args.calls)
        args.config = str(demo_config)  # the dashboard started below reads it too
    # budget alerts go to tokentrail.budget_events and the summary below, not over the progress bar
    budget_log = logging.getLogger("tokentrail.budgets")
    if not budget_log.handlers:
        budget_log.addHandler(logging.NullHandler())
    rt = runtime.configure(config_file=args.config, service_name="tokentrail-demo")
    try:
        result = run_demo(rt, days=args.days, calls=args.calls, seed=args.seed, console=console)
        rt.flush()
    finally:
        rt.shutdown()
    _demo_summary(rt.settings, result, console, demo_config=demo_config, earlier=earlier)
    if args.no_dashboard:
        return EXIT_OK
    return run_dashboard(args, console)


def _earlier_spend(settings: Settings, days: int) -> Totals:
    """What the store already holds for the demo's window (an earlier demo): its `totals`."""
    from datetime import timedelta

    from ..queries import Filters, totals

    with common.open_store(settings) as store:
        return totals(store, Filters(since=clock.now() - timedelta(days=days, minutes=15)))


def shell_path(path: Path) -> str:
    """A path to paste into a shell: ~ for the home directory, quoted only when it must be."""
    import re
    import shlex

    text = str(path)
    home = str(Path.home())
    if text == home or text.startswith(home.rstrip("/") + "/"):
        rest = text[len(home) :].lstrip("/")
        if re.fullmatch(r"[\w@%+=:,./-]*", rest):
            return "~/" + rest if rest else "~"
    return text if re.fullmatch(r"[\w@%+=:,./-]+", text) else shlex.quote(text)


def _demo_summary(
    settings: Settings, result: DemoResult, console: Console, *, demo_config: Path | None = None, earlier: Totals | None = None
) -> None:
    from ..queries import Filters, report, totals
    from ..queries.activity import blocked_calls_by_model, budget_event_counts

    filters = Filters(since=result.start)
    budgets = tuple(settings.budgets)
    with common.open_store(settings) as store:
        total = totals(store, filters)
        rows = report(store, "model", filters)
        events: dict[str, int] = budget_event_counts(store, result.start) if budgets else {}
        blocked: list[tuple[str, int]] = blocked_calls_by_model(store, result.start) if budgets else []
    where = settings.clickhouse_url if not settings.embedded else str(settings.embedded_path)
    parts = [f"LangChain {result.langchain_calls:,} in {result.requests:,} requests, {result.errors:,} failed"]
    if result.llamaindex_calls:
        parts.append(f"LlamaIndex {result.llamaindex_calls:,}")
    console.print(f"demo: {result.model_calls:,} model calls over {result.days} days ({'; '.join(parts)}) -> {where}")
    table = Table(title=f"The store since {result.start:%Y-%m-%d %H:%M} UTC", show_footer=True, header_style="bold")
    table.add_column("model", footer="total")
    table.add_column("calls", justify="right", footer=f"{total.calls:,}")
    table.add_column("tokens in / out", justify="right", footer=f"{total.input_tokens:,} / {total.output_tokens:,}")
    table.add_column("cost", justify="right", footer=usd(total.cost_usd))
    for r in rows:
        table.add_row(r.key or "(unset)", f"{r.calls:,}", f"{r.input_tokens:,} / {r.output_tokens:,}", usd(r.cost_usd))
    console.print(table)
    _demo_budgets_summary(settings, console, demo_config=demo_config, events=events, blocked=blocked, earlier=earlier)
    console.print("next: tokentrail report --by feature | tokentrail dashboard | tokentrail sql \"SELECT ...\"", style="dim")


def _demo_budgets_summary(
    settings: Settings,
    console: Console,
    *,
    demo_config: Path | None,
    events: dict[str, int],
    blocked: list[tuple[str, int]],
    earlier: Totals | None = None,
) -> None:
    """What the budgets did during the demo, and the commands that show them."""
    n = len(settings.budgets)
    if not n:
        where = settings.config_file or "tokentrail.toml"
        console.print(
            f"budgets: none in {where}, so none were enforced (the demo brings its own only when no "
            "tokentrail.toml is in use); add [[budgets]] tables to see warnings and blocks",
            style="dim",
        )
        return
    refused = sum(c for _, c in blocked)
    by_model = ", ".join(f"{m or '(unknown)'} {c:,}" for m, c in blocked)
    source = f"demo budgets ({demo_config})" if demo_config is not None else f"budgets in {settings.config_file}"
    console.print(
        f"budgets: {n} {source}: {events.get('warn', 0):,} warnings, {events.get('block', 0):,} blocks, "
        f"{events.get('reset', 0):,} period resets; {refused:,} model calls refused before the provider"
        + (f" ({by_model})" if by_model else "")
    )
    if demo_config is not None:
        # the CLI and the dashboard read ./tokentrail.toml or TOKENTRAIL_CONFIG, never demo.toml
        # on their own: say how to point them at it
        env = f"TOKENTRAIL_CONFIG={shell_path(demo_config)}"
        console.print(f"see them: {env} tokentrail budgets")
        console.print(f"          {env} tokentrail dashboard   (the Budgets page)")
        if earlier is not None and earlier.calls:
            console.print(
                f"note: before this run the store already held {earlier.calls:,} model calls "
                f"({usd(earlier.cost_usd, 2)}) in the demo's window (an earlier demo?), and the budgets "
                "counted them too; for a fresh demo, give it a new home: TOKENTRAIL_HOME=/tmp/tokentrail-demo tokentrail demo",
                style="yellow",
            )
    else:
        config = settings.config_file
        flag = "" if config is None or config == Path.cwd() / "tokentrail.toml" else f" --config {shell_path(config)}"
        console.print(f"see them: tokentrail budgets{flag} | tokentrail dashboard{flag} (the Budgets page)")
