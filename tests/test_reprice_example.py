"""examples/two_ledgers.py (the README's two-ledgers example) runs and prints exact dollars."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "two_ledgers.py"


def test_two_ledgers_example() -> None:
    out = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120, check=True).stdout
    # o3 on 2025-06-01: 1,000 in x $10/M + 100 out x $40/M = $0.014 a call; on 2025-07-01: $2 / $8
    assert out.splitlines() == [
        "as charged: $0.056000000 (price gp/openai/o3/0/standard)",
        "today's prices, bob: charged $0.014000000 re-priced $0.002800000 (-0.011200000)",
        "today's prices, alice: charged $0.042000000 re-priced $0.008400000 (-0.033600000)",
        "at $1 / $4: o3 re-priced $0.005600000 (-0.050400000)",
        "spans_repriced: charged $0.056000000, at today's prices $0.011200000",
    ]
