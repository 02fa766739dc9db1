"""One hard budget shared by 4 processes x 4 threads through the machine's budget ledger:
exactly the affordable calls go through, never a cent above the limit.

    python examples/shared_budget.py                           # the file ledger (default)
    python examples/shared_budget.py redis://localhost:6379/0  # across hosts, with Redis
"""

from __future__ import annotations

import multiprocessing
import sys
import tempfile
import threading
from decimal import Decimal

import tokentrail
from tokentrail import Budget, BudgetExceeded
from tokentrail.context import Attribution

PRICES = {"my-model": {"input_per_mtok": 0, "output_per_mtok": 3000}}  # 100 output tokens: $0.30
LIMIT = "6.10"  # room for 20 calls


def worker(home: str, backend: str, out: multiprocessing.Queue) -> None:
    rt = tokentrail.configure(home=home, project="shop", budget_backend=backend, prices=PRICES,
                              budgets=[Budget(name="hard", limit_usd=LIMIT, period="month")])
    m = rt.budgets
    done = [0]
    lock = threading.Lock()

    def calls() -> None:
        while True:
            try:  # what the LangChain / LlamaIndex integrations do around each model call
                r = m.reserve(Attribution(project="shop"), model="my-model", provider=None, prompt_tokens=0, max_output_tokens=100)
            except BudgetExceeded:
                return
            m.settle(r, Decimal("0.30"))
            with lock:
                done[0] += 1

    threads = [threading.Thread(target=calls) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(done[0])
    tokentrail.shutdown()


def main() -> None:
    backend = sys.argv[1] if len(sys.argv) > 1 else "file"
    home = tempfile.mkdtemp(prefix="tokentrail-shared-")
    out: multiprocessing.Queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=worker, args=(home, backend, out)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    calls = sum(out.get() for _ in procs)
    print(f"calls through: {calls} (affordable: {int(Decimal(LIMIT) / Decimal('0.30'))})")
    print(f"spent: ${Decimal('0.30') * calls} of ${LIMIT}")


if __name__ == "__main__":
    multiprocessing.set_start_method("spawn")
    main()
