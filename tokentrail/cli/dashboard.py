"""`tokentrail dashboard`: the Streamlit app, run as a child process that stops with the command."""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from rich.console import Console

from .._internal import missing_extra
from . import common
from .common import EXIT_OK, EXIT_RUNTIME
from .output import err


def dashboard_app() -> Path:
    return Path(__file__).resolve().parent.parent / "dashboard" / "app.py"


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
        err(str(missing_extra(ModuleNotFoundError(name="streamlit"), "tokentrail dashboard")))
        return EXIT_RUNTIME
    app = dashboard_app()
    if not app.is_file():
        err(f"dashboard: the app is missing ({app}); reinstall tokentrail with pip install 'tokentrail[dashboard]'")
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


def run(args: argparse.Namespace, console: Console) -> int:
    common.settings(args)  # a bad configuration fails here, in one line, not inside streamlit
    return run_dashboard(args, console)
