"""The README's budget examples run as a user would run them, and print the right dollars."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(name: str) -> list[str]:
    out = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=120, check=True)
    return out.stdout.splitlines()


def test_rollover_example() -> None:
    assert _run("budget_rollover.py") == ["January:  1 call", "February: 7 calls (limit $1.20 + carried $0.90)"]


def test_allowance_example() -> None:
    # 2 calls included ($0.60), 3 in overage at 1.5x: $1.35; the $1.50 limit stops the 6th
    assert _run("budget_allowance.py") == [
        "alice: 5 calls, $1.50 spent, overage owed $1.35",
        "interns: refused, overage $0.30, use my-small-model",
    ]


def test_pool_example() -> None:
    assert _run("budget_pool.py") == [
        "March",
        "  search: calls 4, then refused by 'search'",
        "  ads: calls 1, then refused by 'org'",
        "April",
        "  search: calls 2, then refused by 'search'",
        "search March: borrowed $0.60 in 2 loans, repaid $0.00",
        "search April: borrowed $0.60 in 2 loans, repaid $0.60",
    ]
