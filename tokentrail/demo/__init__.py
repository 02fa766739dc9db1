"""`tokentrail demo`: two weeks of a company's LLM traffic, offline, in seconds.

Acme (see `content`) runs support, search and internal features on real LangChain pipelines
(`langchain_traffic`) and LlamaIndex pipelines (`llamaindex_traffic`, when present) over
offline models that answer with each provider's real usage shape (`models`). The default
tokentrail instance's clock is replaced by a `DemoClock` for the run, so spans, durations and
prices are those of calls made over the last N days. Configured budgets (`tokentrail demo`
brings its own, `budget_config`, when no tokentrail.toml is in use) are enforced on that clock.

Seam for LlamaIndex traffic: when the module `tokentrail.demo.llamaindex_traffic` exists (and
llama-index-core is installed), `run_demo` gives it a quarter of the model calls and calls

    llamaindex_traffic.run(n_calls: int, rng: random.Random, clock: DemoClock) -> int

which must make about `n_calls` model calls (LLM and embedding calls) through LlamaIndex with
tokentrail's instrumentation, and return how many it made. Before each request it calls
`clock.at_progress(made / n_calls)` to place the request on the traffic curve; its offline
models call `clock.advance(ms)` to simulate latency. It attributes requests with
`tokentrail.attributes(...)` using the world in `tokentrail.demo.content` (PROJECTS, FEATURES,
`pick_user`), and may raise nothing: a failed request is caught and recorded by its spans.
"""

from __future__ import annotations

import importlib
import importlib.util
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .. import clock as wall_clock
from .budget_config import start_budget_sync
from .clock import DemoClock

if TYPE_CHECKING:
    from ..runtime import Tokentrail

__all__ = ["DemoClock", "DemoResult", "run_demo"]

LLAMAINDEX_SHARE = 0.25


@dataclass(frozen=True)
class DemoResult:
    start: datetime
    end: datetime
    days: int
    requests: int
    model_calls: int
    errors: int  # failed LangChain requests (provider, tool and parser errors)
    langchain_calls: int
    llamaindex_calls: int
    by_feature: dict[str, int]


def _llamaindex_traffic() -> ModuleType | None:
    if importlib.util.find_spec("llama_index") is None or importlib.util.find_spec("llama_index.core") is None:
        return None
    if importlib.util.find_spec("tokentrail.demo.llamaindex_traffic") is None:
        return None
    return importlib.import_module("tokentrail.demo.llamaindex_traffic")


def run_demo(
    rt: Tokentrail,
    *,
    days: int = 14,
    calls: int = 1500,
    seed: int = 7,
    console: Any = None,
    now: datetime | None = None,
) -> DemoResult:
    """Run about `calls` model calls of demo traffic spread over the last `days` days.

    `rt` must be the default instance (`tokentrail.configure(...)`): the LangChain handler and
    the LlamaIndex instrumentation report to it. Spans are left for `rt.flush()`. Budgets in
    `rt.settings` are enforced on the demo's clock (see `budget_config.BudgetSync`): the budget
    manager built here has no background thread, and `rt.flush()` delivers its events.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .. import runtime
    from . import langchain_traffic

    if runtime.current_or_none() is not rt:
        raise ValueError("run_demo needs the default instance: pass tokentrail.configure(...)'s result")
    if days < 1 or calls < 1:
        raise ValueError("days and calls must be at least 1")
    end = (now or wall_clock.now()) - timedelta(minutes=1)
    start = end - timedelta(days=days)
    clock = DemoClock(start, end, random.Random(seed))
    li = _llamaindex_traffic()
    li_target = int(calls * LLAMAINDEX_SHARE) if li is not None and calls >= 8 else 0
    lc_target = calls - li_target

    saved = rt.clock
    rt.clock = clock
    try:
        # configured budgets are enforced on the demo's clock: events at the demo's times
        sync = start_budget_sync(rt)
        if sync is not None:
            clock.on_request = sync.on_request
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            disable=console is None,
        ) as bar:
            task = bar.add_task(f"demo traffic, {days} days", total=calls)
            traffic = langchain_traffic.run(
                lc_target, random.Random(seed), clock, progress=lambda n: bar.update(task, completed=min(n, calls))
            )
            li_calls = 0
            if li is not None and li_target:
                li_calls = int(li.run(li_target, random.Random(seed + 1), clock))
            bar.update(task, completed=calls)
    finally:
        clock.on_request = None
        rt.clock = saved
    return DemoResult(
        start=start,
        end=end,
        days=days,
        requests=traffic.requests,
        model_calls=traffic.model_calls + li_calls,
        errors=traffic.failed_requests,
        langchain_calls=traffic.model_calls,
        llamaindex_calls=li_calls,
        by_feature=dict(traffic.by_feature),
    )
