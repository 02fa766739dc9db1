"""The `tokentrail` command: sql, report, prices, ingest, status, demo, dashboard, budgets (SPEC §8).

Every command opens the store at most once (the embedded store admits one process at a time).
A user error prints one line, `tokentrail: <what>: <problem>; <fix>`, to stderr and exits 2 for
usage and configuration, 1 for anything that failed at run time. No traceback for those.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, NoReturn

from rich.console import Console
from rich.table import Table

from . import clock
from ._internal import missing_extra
from .errors import ConfigError, TokentrailError
from .runtime import VERSION

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad command line: argparse's message, made one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"tokentrail: {self.prog.removeprefix('tokentrail').strip() or 'usage'}: {message}; see '{self.prog} --help'")


# -- output helpers ------------------------------------------------------------------------
def usd(value: Decimal | None, places: int = 6) -> str:
    """`$1.234567`; None (no priced call) is `unpriced`, never $0."""
    if value is None:
        return "unpriced"
    q = Decimal(1).scaleb(-places)
    return f"${value.quantize(q):,}"


def _plain(value: Any) -> Any:
    """A value as JSON / CSV can hold it: Decimal as a string (exact), times as ISO."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN / Infinity; ClickHouse's own JSON output writes null too
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(_plain(value), ensure_ascii=False)
    return str(value)


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(_plain(value), ensure_ascii=False)
    plain = _plain(value)
    return str(plain)


def write_json(data: Any, out: IO[str]) -> None:
    json.dump(_plain(data), out, ensure_ascii=False, indent=2, allow_nan=False)
    out.write("\n")


def write_csv(columns: Sequence[str], rows: Sequence[Sequence[Any]], out: IO[str]) -> None:
    w = csv.writer(out, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_csv_cell(v) for v in r])


def _numeric(type_name: str) -> bool:
    t = type_name.removeprefix("Nullable(").removeprefix("LowCardinality(")
    return t.startswith(("Int", "UInt", "Float", "Decimal"))


def _console(*, markup: bool = False) -> Console:
    # piped output: wide, so tables are not squeezed to 80 columns; markup off by default:
    # values from the store (SQL results, model names) are printed verbatim
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False, soft_wrap=False, markup=markup)


def _err(message: str) -> None:
    line = " ".join(str(message).split())
    if not line.startswith("tokentrail"):
        line = f"tokentrail: {line}"
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


# -- configuration -------------------------------------------------------------------------
def _settings(args: argparse.Namespace) -> Any:
    from .config import resolve

    return resolve(config_file=args.config)


LOCK_TIMEOUT_S = 30.0  # how long a command waits for another reader of the embedded store


def _open(settings: Any) -> Any:
    from .store import open_store

    return open_store(settings, lock_timeout=LOCK_TIMEOUT_S)


def _filters(args: argparse.Namespace) -> Any:
    from .queries import Filters

    def one_or_many(v: list[str] | None) -> str | tuple[str, ...] | None:
        if not v:
            return None
        return v[0] if len(v) == 1 else tuple(v)

    filters = Filters(
        since=args.since,
        until=args.until,
        project=one_or_many(args.project),
        environment=one_or_many(args.environment),
        team=one_or_many(args.team),
        feature=one_or_many(args.feature),
        user_id=one_or_many(args.user),
        model=one_or_many(args.model),
        provider=one_or_many(args.provider),
    )
    try:
        filters.time_range()
    except ConfigError as e:  # name the flag the user typed
        raise ConfigError(f"--{e.field}", e.problem, e.fix) from None
    return filters


# -- sql -----------------------------------------------------------------------------------
def cmd_sql(args: argparse.Namespace, console: Console) -> int:
    from .queries import run_sql

    query = sys.stdin.read() if args.query == "-" else args.query
    settings = _settings(args)
    with _open(settings) as store:
        result = run_sql(store, query, readonly=True)
    if args.format == "json":
        write_json(result.records(), sys.stdout)
    elif args.format == "csv":
        write_csv(result.columns, result.rows, sys.stdout)
    else:
        table = Table(show_header=True, header_style="bold", show_lines=False)
        for name, type_name in zip(result.columns, result.types or [""] * len(result.columns), strict=False):
            table.add_column(name, justify="right" if _numeric(type_name) else "left", overflow="fold")
        for r in result.rows:
            table.add_row(*(_cell(v) for v in r))
        console.print(table)
        console.print(f"{len(result.rows)} row{'s' if len(result.rows) != 1 else ''}", style="dim")
    return EXIT_OK


# -- report --------------------------------------------------------------------------------
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


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from .queries import report, totals

    filters = _filters(args)
    settings = _settings(args)
    with _open(settings) as store:
        rows = report(store, args.by, filters, limit=args.limit)
        total = totals(store, filters)
    key_name = args.by
    if args.format == "json":
        write_json(
            {
                "by": args.by,
                "filters": filters.describe(),
                "rows": [{key_name: r.key, **{f: getattr(r, f) for f in _REPORT_FIELDS}} for r in rows],
                "total": {f: getattr(total, f) for f in _REPORT_FIELDS},
            },
            sys.stdout,
        )
        return EXIT_OK
    if args.format == "csv":
        write_csv([key_name, *_REPORT_FIELDS], [[r.key, *(getattr(r, f) for f in _REPORT_FIELDS)] for r in rows], sys.stdout)
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
            share(r.cost_usd),
            f"{r.unpriced_calls:,}",
            f"{r.errors:,}",
        )
    console.print(table)
    if not rows:
        console.print("no model calls match; run `tokentrail demo --no-dashboard` for sample data", style="dim")
    elif total.unpriced_calls:
        console.print(
            f"{total.unpriced_calls:,} call(s) have no known price and are not in the cost; "
            'add [prices."<model>"] to tokentrail.toml to price them',
            style="yellow",
        )
    return EXIT_OK


# -- prices --------------------------------------------------------------------------------
_PRICE_ROWS = (
    ("input_per_mtok", "input"),
    ("output_per_mtok", "output"),
    ("cache_read_per_mtok", "cache read"),
    ("cache_write_per_mtok", "cache write"),
)


def cmd_prices(args: argparse.Namespace, console: Console) -> int:
    from .pricing import PriceBook

    when = clock.now() if args.at is None else _flag_time(args.at, "--at")
    settings = _settings(args)
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
        _err(f"prices: no price known for {args.model!r}{f' (provider {args.provider})' if args.provider else ''}; {hint}")
        return EXIT_RUNTIME
    return EXIT_OK


def _flag_time(value: str, flag: str) -> datetime:
    from .queries import parse_time

    try:
        return parse_time(value, field_name=flag)
    except ConfigError as e:
        raise ConfigError(flag, e.problem, e.fix) from None


# -- ingest --------------------------------------------------------------------------------
_RETRY_HINT = "fix or delete it (the store's error is beside it in <file>.error.txt), then `tokentrail ingest --retry-rejected`"


def cmd_ingest(args: argparse.Namespace, console: Console) -> int:
    from .store import spool

    settings = _settings(args)
    requeued = spool.requeue_rejected(settings.spool_dir) if args.retry_rejected else 0
    with _open_no_ingest(settings) as store:
        before = _row_counts(store)
        done = store.ingest()
        after = _row_counts(store)
    added = {t: after[t] - before.get(t, 0) for t in after}
    if requeued:
        console.print(f"retried {requeued} set-aside file{'s' if requeued != 1 else ''}")
    if done.batches == 0 and not done.set_aside:
        console.print(f"spool empty ({settings.spool_dir}); nothing to ingest")
    elif done.batches:
        console.print(
            f"ingested {done.batches} batch{'es' if done.batches != 1 else ''} into {settings.public_store}: "
            f"{added.get('spans', 0):,} spans, {added.get('budget_events', 0):,} budget events"
            + (f", {added['lost_spans']:,} lost-spans records" if added.get("lost_spans") else "")
        )
    for path, why in done.set_aside:
        console.print(f"set aside {path} (the store refused it: {why[:200]})", style="yellow")
    if done.set_aside:
        console.print(f"{len(done.set_aside)} file(s) set aside, the others ingested; {_RETRY_HINT}", style="yellow")
    return EXIT_OK


def _open_no_ingest(settings: Any) -> Any:
    from .store import open_store

    return open_store(settings, ingest=False, lock_timeout=LOCK_TIMEOUT_S)


def _row_counts(store: Any) -> dict[str, int]:
    # count(): exact on a Distributed table too (system.tables has no rows for one)
    return {t: int(store.rows(f"SELECT count() FROM {store.table(t)}")[0][0]) for t in ("spans", "budget_events", "lost_spans")}


# -- status --------------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace, console: Console) -> int:
    from .config import format_size as _bytes
    from .store.status import gather

    settings = _settings(args)
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
        table.add_row("set aside", "\n".join([f"{len(st.rejected)} file(s) the store refused:", *lines, _RETRY_HINT]))
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


# -- dashboard -----------------------------------------------------------------------------
def dashboard_app() -> Path:
    return Path(__file__).resolve().parent / "dashboard" / "app.py"


def dashboard_command(host: str, port: int, *, headless: bool = False) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(dashboard_app()),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",  # no network calls from a local tool
        "--server.fileWatcherType",
        "none",  # an installed app: nothing to hot-reload, and no inotify watches
    ]
    if headless:
        cmd += ["--server.headless", "true"]
    return cmd


def run_dashboard(args: argparse.Namespace, console: Console) -> int:
    if importlib.util.find_spec("streamlit") is None:
        _err(str(missing_extra(ModuleNotFoundError(name="streamlit"), "tokentrail dashboard")))
        return EXIT_RUNTIME
    app = dashboard_app()
    if not app.is_file():
        _err(f"dashboard: the app is missing ({app}); reinstall tokentrail with pip install 'tokentrail[dashboard]'")
        return EXIT_RUNTIME
    env = dict(os.environ)
    if args.config:
        env["TOKENTRAIL_CONFIG"] = str(Path(args.config).expanduser().resolve())
    console.print(f"tokentrail dashboard on http://{args.host}:{args.port} (Ctrl-C to stop)")
    return run_child(dashboard_command(args.host, args.port, headless=args.headless), env)


def run_child(cmd: list[str], env: dict[str, str]) -> int:
    """Run `cmd` until it exits; Ctrl-C and SIGTERM stop it too (no orphaned server)."""
    proc = subprocess.Popen(cmd, env=env)
    previous: Any = None
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: proc.terminate())
    try:
        return proc.wait()
    except KeyboardInterrupt:  # the terminal sent SIGINT to the child too: let it stop cleanly
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait()
        return EXIT_OK
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait()
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def cmd_dashboard(args: argparse.Namespace, console: Console) -> int:
    _settings(args)  # a bad configuration fails here, in one line, not inside streamlit
    return run_dashboard(args, console)


# -- budgets -------------------------------------------------------------------------------
def cmd_budgets(args: argparse.Namespace, console: Console) -> int:
    try:
        from .budgets.cli import budgets_command
    except ModuleNotFoundError as e:
        if e.name and e.name.startswith("tokentrail"):
            _err("budgets: not available in this installation (tokentrail.budgets.cli is missing); upgrade tokentrail")
            return EXIT_RUNTIME
        raise
    settings = _settings(args)
    # the budgets table styles its cells with rich markup
    return int(budgets_command(settings, _console(markup=True)))


# -- demo ----------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    if importlib.util.find_spec("langchain_core") is None:
        _err("demo: langchain-core is not installed; pip install 'tokentrail[langchain]'")
        return EXIT_RUNTIME
    from . import runtime
    from .demo import run_demo
    from .demo.budget_config import write_demo_config

    # the user's tokentrail.toml (--config, TOKENTRAIL_CONFIG, working directory) wins; without
    # one, the demo's own budgets, written to the home, so there is something to see
    demo_config: Path | None = None
    earlier: Any = None
    settings = _settings(args)
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


def _earlier_spend(settings: Any, days: int) -> Any:
    """What the store already holds for the demo's window (an earlier demo): its `totals`."""
    from datetime import timedelta

    from .queries import Filters, totals

    with _open(settings) as store:
        return totals(store, Filters(since=clock.now() - timedelta(days=days, minutes=15)))


def _shell_path(path: Path) -> str:
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
    settings: Any, result: Any, console: Console, *, demo_config: Path | None = None, earlier: Any = None
) -> None:
    from .queries import MODEL_OPERATIONS, Filters, report, totals

    filters = Filters(since=result.start)
    since_us = int(result.start.timestamp() * 1_000_000)
    budgets = tuple(settings.budgets)
    with _open(settings) as store:
        total = totals(store, filters)
        rows = report(store, "model", filters)
        events: dict[str, int] = {}
        blocked: list[tuple[str, int]] = []
        if budgets:
            since = f"fromUnixTimestamp64Micro(toInt64({since_us}), 'UTC')"
            events = {
                str(e): int(n)
                for e, n in store.rows(
                    f"SELECT event, count() FROM {store.table('budget_events')} WHERE timestamp >= {since} GROUP BY event"
                )
            }
            ops = ", ".join(f"'{op}'" for op in MODEL_OPERATIONS)
            blocked = [
                (str(m), int(n))
                for m, n in store.rows(
                    f"SELECT request_model, count() AS n FROM {store.table('spans')} WHERE timestamp >= {since} "
                    f"AND operation IN ({ops}) AND error_type = 'BudgetExceeded' GROUP BY request_model ORDER BY n DESC, request_model"
                )
            ]
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
    settings: Any,
    console: Console,
    *,
    demo_config: Path | None,
    events: dict[str, int],
    blocked: list[tuple[str, int]],
    earlier: Any = None,
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
        env = f"TOKENTRAIL_CONFIG={_shell_path(demo_config)}"
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
        flag = "" if config is None or config == Path.cwd() / "tokentrail.toml" else f" --config {_shell_path(config)}"
        console.print(f"see them: tokentrail budgets{flag} | tokentrail dashboard{flag} (the Budgets page)")


# -- parser --------------------------------------------------------------------------------
def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not between 1 and 65535")
    return port


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} must be at least 1")
    return n


def build_parser() -> argparse.ArgumentParser:
    from .queries import GROUP_BY

    # --config works before or after the command. SUPPRESS: a sub-command does not reset it (the
    # action is shared by every parser, so no set_defaults here; main() fills in None)
    common = _Parser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="tokentrail.toml to read")

    parser = _Parser(
        prog="tokentrail",
        description="Know, cap and cut what LLM applications spend.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"tokentrail {VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser("sql", parents=[common], help="run read-only SQL on the store", description="Run read-only SQL on the store (tables tokentrail.spans, tokentrail.budget_events).")
    p.add_argument("query", help='the SQL, e.g. "SELECT request_model, sum(cost_usd) FROM tokentrail.spans GROUP BY 1"; - reads stdin')
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=cmd_sql)

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
    p.add_argument("--limit", type=_positive, help="at most this many rows")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("prices", parents=[common], help="the price that would be used for a model, and its source")
    p.add_argument("model")
    p.add_argument("--provider", help="openai, anthropic, gcp.gemini, aws.bedrock, ... (default: inferred)")
    p.add_argument("--at", metavar="DATE", help="price valid at this date (default now)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=cmd_prices)

    p = sub.add_parser("ingest", parents=[common], help="drain the spool into the store now")
    p.add_argument("--retry-rejected", action="store_true", help="first put the files set aside in spool/rejected back")
    p.set_defaults(func=cmd_ingest)

    from .interop.cli_otel import add_parser as add_otel  # tokentrail otel attach|backfill

    add_otel(sub, common)

    p = sub.add_parser("status", parents=[common], help="store reachable, spool depth, set-aside files, lost spans, export errors")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the store (default 5)")
    p.set_defaults(func=cmd_status)

    dash = _Parser(add_help=False)
    dash.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    dash.add_argument("--port", type=_port, default=8501)
    dash.add_argument("--headless", action="store_true", help="do not open a browser")

    p = sub.add_parser("demo", parents=[common, dash], help="realistic traffic through LangChain (and LlamaIndex) into the store")
    p.add_argument("--days", type=_positive, default=14, help="days of history (default 14)")
    p.add_argument("--calls", type=_positive, default=1500, help="about this many model calls (default 1500)")
    p.add_argument("--seed", type=int, default=7, help="random seed (same seed, same traffic)")
    p.add_argument("--no-dashboard", action="store_true", help="exit after the traffic instead of starting the dashboard")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("dashboard", parents=[common, dash], help="the Streamlit dashboard")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("budgets", parents=[common], help="each budget: spent, limit, forecast")
    p.set_defaults(func=cmd_budgets)
    return parser


# -- entry point ---------------------------------------------------------------------------
def _clickhouse_problem(e: BaseException, args: argparse.Namespace) -> str:
    """One line for a store failure outside user SQL, by kind (tokentrail.store.errors): an
    unreachable server, a wrong password, a missing right, a table that is not tokentrail's."""
    from .store import problem

    try:
        settings = _settings(args)
    except Exception:
        from .config import Settings

        settings = Settings()
    return f"tokentrail: {args.command}: {problem(e, settings).message}"


def _missing_module(e: ModuleNotFoundError, command: str) -> str:
    name = (e.name or "").split(".")[0]
    hint = missing_extra(e, f"tokentrail {command}")
    if hint is not None:
        return str(hint)
    if name == "tokentrail":
        return f"tokentrail: {command}: {e.name} is missing from this installation; reinstall tokentrail"
    return f"tokentrail: {command}: the {e.name} package is not installed; pip install {name}"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        _err(str(e))
        return EXIT_USAGE
    except SystemExit as e:  # --help, --version
        return int(e.code or 0) if not isinstance(e.code, str) else EXIT_USAGE
    if not hasattr(args, "config"):
        args.config = None
    # the HTTP client logs its failures before raising them: the one-line message says it all
    logging.getLogger("clickhouse_connect").addHandler(logging.NullHandler())
    logging.getLogger("clickhouse_connect").propagate = False
    console = _console()
    func: Callable[[argparse.Namespace, Console], int] = args.func
    from .store.errors import StoreError

    try:
        return int(func(args, console))
    except ConfigError as e:
        _err(str(e))
        return EXIT_USAGE
    except StoreError as e:  # found by tokentrail itself: a migration it may not run, a foreign table
        _err(f"tokentrail: {args.command}: {e.problem.message}")
        return EXIT_RUNTIME
    except TokentrailError as e:
        _err(str(e))
        return EXIT_RUNTIME
    except TimeoutError as e:  # the store lock (store.lock.LockTimeout)
        _err(str(e))
        return EXIT_RUNTIME
    except ModuleNotFoundError as e:
        _err(_missing_module(e, args.command))
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        _err(f"{args.command}: interrupted")
        return 130
    except Exception as e:
        from clickhouse_connect.driver.exceptions import ClickHouseError

        if isinstance(e, ClickHouseError):
            _err(_clickhouse_problem(e, args))
            return EXIT_RUNTIME
        if isinstance(e, OSError) and e.filename:
            _err(f"tokentrail: {args.command}: {e.strerror} ({e.filename}); check the path and its permissions")
            return EXIT_RUNTIME
        raise




if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
