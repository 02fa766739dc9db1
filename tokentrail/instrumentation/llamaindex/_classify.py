"""Which LlamaIndex spans become OpenTelemetry spans, and with what operation.

LlamaIndex opens a span for nearly every method it decorates: `query` and `_query`,
`retrieve` and `_retrieve`, `predict` around `complete`, text splitters, the same synthesizer
method nested in itself... One OTel span each would cost ~30 µs apiece and bury the calls that
spend money. So a LlamaIndex span is either *emitted* (it gets an OTel span) or *skipped* (an
alias for its nearest emitted ancestor, so that its children and events land there):

- skipped: private methods (`_query`), text splitters and other transform components, LLM
  wrappers that are not a model call (`predict`, `stream`, `structured_predict`: the model call
  inside them is the span that carries usage, so a call is counted once), free functions, and a
  method of the object that owns the enclosing emitted span (`synthesize` -> `get_response`);
- emitted: model calls (`chat {model}`, `text_completion {model}`, `embeddings {model}`),
  retrievers (`retrieval {Class}`), tools (`execute_tool {name}`), agents (`invoke_agent
  {name}`), workflows (`invoke_workflow {Class}`), workflow steps, and every other public
  component method (query engines, synthesizers, chat engines, programs, postprocessors) as a
  lean `chain` span named `{Class}.{method}`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from ... import semconv as sc

__all__ = ["SKIP", "Kind", "classify"]

# kind tags (small ints are cheap to compare on every span)
K_SKIP = 0
K_LLM = 1
K_EMBEDDING = 2
K_RETRIEVER = 3
K_TOOL = 4
K_AGENT = 5
K_WORKFLOW = 6
K_STEP = 7
K_CHAIN = 8

_CHAT_METHODS = frozenset({"chat", "achat", "stream_chat", "astream_chat"})
_COMPLETION_METHODS = frozenset({"complete", "acomplete", "stream_complete", "astream_complete"})
_RETRIEVER_METHODS = frozenset({"retrieve", "aretrieve"})
_TOOL_METHODS = frozenset({"call", "acall", "__call__"})
_WORKFLOW_METHODS = frozenset({"run"})
STEP_TAG = "llamaindex.step.input_event"  # set by llama-index-workflows on step spans


@dataclass(frozen=True, slots=True)
class Kind:
    kind: int
    operation: str


SKIP = Kind(K_SKIP, "")
_LLM_CHAT = Kind(K_LLM, sc.OP_CHAT)
_LLM_COMPLETION = Kind(K_LLM, sc.OP_TEXT_COMPLETION)
_EMBEDDING = Kind(K_EMBEDDING, sc.OP_EMBEDDINGS)
_RETRIEVER = Kind(K_RETRIEVER, sc.OP_RETRIEVAL)
_TOOL = Kind(K_TOOL, sc.OP_EXECUTE_TOOL)
_AGENT = Kind(K_AGENT, sc.OP_INVOKE_AGENT)
_WORKFLOW = Kind(K_WORKFLOW, sc.OP_INVOKE_WORKFLOW)
STEP = Kind(K_STEP, sc.OP_CHAIN)
_CHAIN = Kind(K_CHAIN, sc.OP_CHAIN)


def _load(module: str, name: str) -> type | None:
    try:
        mod = __import__(module, fromlist=[name])
        found = getattr(mod, name, None)
    except Exception:  # an optional part of LlamaIndex that is not installed
        return None
    return found if isinstance(found, type) else None


class _Bases:
    """LlamaIndex base classes, imported once, lazily (tokentrail never imports LlamaIndex
    unless LlamaIndex is instrumented)."""

    def __init__(self) -> None:
        self.llm = _load("llama_index.core.base.llms.base", "BaseLLM")
        self.embedding = _load("llama_index.core.base.embeddings.base", "BaseEmbedding")
        self.retriever = _load("llama_index.core.base.base_retriever", "BaseRetriever")
        self.tool = _load("llama_index.core.tools.types", "BaseTool")
        self.agent = _load("llama_index.core.agent.workflow", "BaseWorkflowAgent")
        self.workflow = _load("workflows", "Workflow") or _load("llama_index.core.workflow", "Workflow")
        self.transform = _load("llama_index.core.schema", "TransformComponent")


_bases: _Bases | None = None
_cache: dict[tuple[type, str], Kind] = {}
_lock = threading.Lock()


def _is(instance: Any, base: type | None) -> bool:
    return base is not None and isinstance(instance, base)


def _classify_type(instance: Any, method: str) -> Kind:
    global _bases
    if _bases is None:
        with _lock:
            if _bases is None:
                _bases = _Bases()
    b = _bases
    if method.startswith("_") and method != "__call__":
        return SKIP
    if _is(instance, b.llm):
        if method in _CHAT_METHODS:
            return _LLM_CHAT
        if method in _COMPLETION_METHODS:
            return _LLM_COMPLETION
        return SKIP  # predict, stream, structured_predict, chat_with_tools...: wrappers
    if _is(instance, b.embedding):
        return _EMBEDDING  # events of nested calls (batch -> one text) land on the outer span
    if _is(instance, b.retriever):
        return _RETRIEVER if method in _RETRIEVER_METHODS else SKIP
    if _is(instance, b.tool):
        return _TOOL if method in _TOOL_METHODS else SKIP
    if _is(instance, b.agent):
        return _AGENT if method in _WORKFLOW_METHODS else SKIP
    if _is(instance, b.workflow):
        return _WORKFLOW if method in _WORKFLOW_METHODS else SKIP
    if _is(instance, b.transform) or method == "__call__":
        return SKIP  # text splitters, node parsers, extractors; callable helpers
    return _CHAIN


def classify(instance: Any, method: str, tags: dict[str, Any] | None) -> Kind:
    """The kind of a LlamaIndex span from its instance and method name (cached per class)."""
    if instance is None:
        # workflow steps are bound functions: the runtime marks them with their input event
        return STEP if tags and STEP_TAG in tags else SKIP
    key = (type(instance), method)
    found = _cache.get(key)
    if found is None:
        found = _classify_type(instance, method)
        if len(_cache) < 4096:
            _cache[key] = found
    return found
