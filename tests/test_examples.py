"""The quickstart examples run as a user would run them, and print the right dollars."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(name: str) -> str:
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], capture_output=True, text=True, timeout=120, check=True
    )
    return out.stdout


def test_langchain_quickstart() -> None:
    # gpt-4o-mini: 176 uncached in at $0.15/M, 1024 cached at $0.075/M, 150 out at $0.60/M
    lines = _run("langchain_quickstart.py").splitlines()
    assert lines == [
        "alice  calls=2 tokens=2700 cost=$0.000386400",
        "bob    calls=1 tokens=1350 cost=$0.000193200",
    ]


def test_llamaindex_quickstart() -> None:
    out = _run("llamaindex_quickstart.py")
    # the override prices 50 in at $0.50/M and 64 out at $1.50/M; the mock embedding stays NULL
    assert "text_completion acme-llm-7b" in out
    assert "cost=0.000121000 (override)" in out
    assert "cost=None (unpriced)" in out


def test_shared_budget_example() -> None:
    # 4 processes x 4 threads, $6.10 at $0.30 a call: exactly 20 calls, $6.00 spent
    assert _run("shared_budget.py").splitlines() == ["calls through: 20 (affordable: 20)", "spent: $6.00 of $6.10"]
