"""Two real processes share one budget through the embedded store: together they overshoot the
limit by at most what one spends in a refresh interval plus the span exporter's delay."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from decimal import Decimal
from pathlib import Path

from tokentrail.config import resolve
from tokentrail.store import open_store

CHILD = textwrap.dedent(
    """
    import sys, time
    from decimal import Decimal
    from pathlib import Path
    from typing import Any
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import AIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult
    import tokentrail

    class Fake(BaseChatModel):
        model_name: str = "shared-fake"
        max_tokens: int = 100
        @property
        def _llm_type(self) -> str:
            return "fake"
        def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any) -> ChatResult:
            usage = {"input_tokens": 5, "output_tokens": 100, "total_tokens": 105}
            return ChatResult(generations=[ChatGeneration(message=AIMessage(content="ok", usage_metadata=usage))])

    home, go = sys.argv[1], Path(sys.argv[2])
    rt = tokentrail.configure(
        home=home, project="shared",
        prices={"shared-fake": {"input_per_mtok": 0, "output_per_mtok": 200}},  # $0.02 a call
        budgets=[tokentrail.Budget(name="shared", limit_usd=1, period="total")],
    )
    model, handler = Fake(), tokentrail.langchain_handler()
    assert rt.budgets is not None
    while not go.exists():
        time.sleep(0.01)
    ok = 0
    while True:
        try:
            model.invoke("hi", config={"callbacks": [handler]})
        except tokentrail.BudgetExceeded:
            break
        ok += 1
        time.sleep(0.2)  # 5 calls a second: $0.10/s per process
    tokentrail.shutdown()
    print(ok)
    """
)


def test_two_processes_share_a_budget(tt_home: Path, tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    go = tmp_path / "go"
    env = {"TOKENTRAIL_BUDGET_REFRESH_SECONDS": "0.3", "PATH": "/usr/bin:/bin"}
    procs = [
        subprocess.Popen([sys.executable, str(script), str(tt_home), str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    time.sleep(1.5)  # both import and load the budget
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    calls = [int(out.split()[-1]) for out, _ in outs]
    with open_store(resolve(home=tt_home)) as store:
        total, n = store.rows("SELECT sum(cost_usd), count() FROM tokentrail.spans WHERE cost_usd IS NOT NULL")[0]
    print(f"calls per process {calls}, total ${total}")
    assert n == sum(calls)
    assert total == Decimal("0.02") * n
    # both took part, and they stopped together near the limit
    assert min(calls) >= 10
    assert total >= Decimal("0.98")
    # alone, each would spend $1.00 (together $2.00). Shared, the overshoot is bounded by what
    # the other process spends while its spend is invisible: refresh interval (0.3 s) + exporter
    # delay (1 s) + a store open (< 0.5 s) at $0.10/s
    assert total <= Decimal("1.20"), f"overshoot ${total - 1} with calls {calls}"
