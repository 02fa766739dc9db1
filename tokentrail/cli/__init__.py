"""The `tokentrail` command: sql, report, prices, ingest, status, demo, dashboard, budgets.

Every command opens the store at most once (the embedded store admits one process at a time).
A user error prints one line, `tokentrail: <what>: <problem>; <fix>`, to stderr and exits 2 for
usage and configuration, 1 for anything that failed at run time. No traceback for those.
Each command is one module here (`sql.py` is `tokentrail sql`); what they print is `output.py`.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable

from rich.console import Console

from .._internal import missing_extra
from ..errors import ConfigError, TokentrailError
from . import common
from .common import EXIT_RUNTIME, EXIT_USAGE, UsageError
from .output import console_for, err
from .parser import build_parser

__all__ = ["build_parser", "main"]


def _clickhouse_problem(e: BaseException, args: argparse.Namespace) -> str:
    """One line for a store failure outside user SQL, by kind (tokentrail.store.errors): an
    unreachable server, a wrong password, a missing right, a table that is not tokentrail's."""
    from ..store import problem

    try:
        settings = common.settings(args)
    except Exception:  # the settings are what failed: word the error with the defaults
        from ..config import Settings

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
        err(str(e))
        return EXIT_USAGE
    except SystemExit as e:  # --help, --version
        return int(e.code or 0) if not isinstance(e.code, str) else EXIT_USAGE
    if not hasattr(args, "config"):
        args.config = None
    # the HTTP client logs its failures before raising them: the one-line message says it all
    logging.getLogger("clickhouse_connect").addHandler(logging.NullHandler())
    logging.getLogger("clickhouse_connect").propagate = False
    console = console_for()
    func: Callable[[argparse.Namespace, Console], int] = args.func
    from ..store.errors import StoreError

    try:
        return int(func(args, console))
    except ConfigError as e:
        err(str(e))
        return EXIT_USAGE
    except StoreError as e:  # found by tokentrail itself: a migration it may not run, a foreign table
        err(f"tokentrail: {args.command}: {e.problem.message}")
        return EXIT_RUNTIME
    except TokentrailError as e:
        err(str(e))
        return EXIT_RUNTIME
    except TimeoutError as e:  # the store lock (store.lock.LockTimeout)
        err(str(e))
        return EXIT_RUNTIME
    except ModuleNotFoundError as e:
        err(_missing_module(e, args.command))
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        err(f"{args.command}: interrupted")
        return 130
    except Exception as e:  # the command's last resort: one line naming the fix, not a traceback
        from clickhouse_connect.driver.exceptions import ClickHouseError

        if isinstance(e, ClickHouseError):
            err(_clickhouse_problem(e, args))
            return EXIT_RUNTIME
        if isinstance(e, OSError) and e.filename:
            err(f"tokentrail: {args.command}: {e.strerror} ({e.filename}); check the path and its permissions")
            return EXIT_RUNTIME
        raise
