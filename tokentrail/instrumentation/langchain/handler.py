"""TokentrailCallbackHandler: LangChain runs -> OpenTelemetry spans with tokens and cost.

The handler is put together from the run bookkeeping (runs.py: one span per run, parents,
contexts, the sweep of runs whose end never came) and the callbacks: model runs (models.py, an
adapter to the shared model-call lifecycle in instrumentation/lifecycle.py), tools and
retrievers (tools.py), chains (here). Usage and attribution are read by readers.py.

Hot path (chain spans): a handful of attributes, no copies of inputs or outputs, cached
attribution attributes. Model spans add usage and cost when the run ends.
"""

from __future__ import annotations

import functools
import logging
from typing import Any
from uuid import UUID

from opentelemetry.trace import SpanKind

from ... import _internal
from ... import semconv as sc
from . import extract
from .models import ModelCallbacks
from .runs import FRAMEWORK, RunBook
from .tools import ToolCallbacks

__all__ = ["FRAMEWORK", "TokentrailCallbackHandler", "langchain_handler"]


@functools.lru_cache(maxsize=2048)
def _classify_chain(name: str, node: str | None, langgraph: bool) -> tuple[str, str]:
    """(operation, span name) of a chain run: LangGraph graphs and agents get their GenAI names."""
    agent = "agent" in name.lower()
    if node is not None and node == name:  # a LangGraph node
        return (sc.OP_INVOKE_AGENT, f"invoke_agent {name}") if agent else (sc.OP_CHAIN, name)
    if (langgraph and node is None) or name == "LangGraph":  # the graph itself
        if agent:
            return sc.OP_INVOKE_AGENT, f"invoke_agent {name}"
        return sc.OP_INVOKE_WORKFLOW, f"invoke_workflow {name}"
    if agent:  # AgentExecutor and friends
        return sc.OP_INVOKE_AGENT, f"invoke_agent {name}"
    return sc.OP_CHAIN, name

class TokentrailCallbackHandler(ModelCallbacks, ToolCallbacks):
    """A LangChain callback handler recording every run as an OpenTelemetry span.

    Keyword arguments are attribution (project, environment, team, feature, user_id,
    session_id, tags); they override `tokentrail.attributes()` and the configure defaults,
    and are overridden by LangChain run metadata / tags.
    """

    @_internal.swallow_errors
    def on_chain_start(self, serialized: dict[str, Any] | None, inputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        tags, metadata = kwargs.get("tags"), kwargs.get("metadata")
        opened = self._open(run_id, kwargs.get("parent_run_id"), tags, metadata)
        if opened is None:
            return
        run, parent_ctx = opened
        if tags and "langsmith:hidden" in tags:
            # framework plumbing (LangGraph channel writes...): no span, children pass through
            run.ctx = parent_ctx
            return
        name = kwargs.get("name") or extract.serialized_name(serialized) or "chain"
        if metadata:
            node = metadata.get("langgraph_node")
            langgraph = metadata.get("ls_integration") == "langgraph"
            operation, span_name = _classify_chain(name, node if isinstance(node, str) else None, langgraph)
        else:
            operation, span_name = _classify_chain(name, None, False)
        extra = {sc.GEN_AI_AGENT_NAME: name} if operation == sc.OP_INVOKE_AGENT else None
        self._start_span(run, parent_ctx, span_name, operation, SpanKind.INTERNAL, extra)
        self._activate(run, parent_ctx)

    @_internal.swallow_errors
    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        run = self._take(run_id)
        if run is not None:
            self._close(run)

    on_chain_error = RunBook._end_with_error


class _QuietBudgetBlocks(logging.Filter):
    """LangChain logs a WARNING for an exception re-raised from a callback (raise_error=True);
    a BudgetExceeded is tokentrail's own, already logged and recorded in budget_events."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (
            len(args) == 3 and args[0] == "TokentrailCallbackHandler" and str(args[2]).startswith("BudgetExceeded(")
        )


_quiet_filter = _QuietBudgetBlocks()
logging.getLogger("langchain_core.callbacks.manager").addFilter(_quiet_filter)


def langchain_handler(**attribution: Any) -> TokentrailCallbackHandler:
    """A callback handler for `config={"callbacks": [...]}`; keyword arguments are attribution."""
    return TokentrailCallbackHandler(**attribution)
