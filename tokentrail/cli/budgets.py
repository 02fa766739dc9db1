"""`tokentrail budgets`: each budget, spent, limit, forecast (the table is tokentrail.budgets.cli's)."""

from __future__ import annotations

import argparse

from rich.console import Console

from . import common
from .output import console_for


def run(args: argparse.Namespace, console: Console) -> int:
    from ..budgets.cli import budgets_command

    settings = common.settings(args)
    # the budgets table styles its cells with rich markup
    return int(budgets_command(settings, console_for(markup=True)))
