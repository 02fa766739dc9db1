"""LlamaIndex retrievers, tools, agents, workflows and steps: their span names and attributes
(`retrieval {name}`, `execute_tool {name}`, `invoke_agent {name}`...), and the tool arguments and
results recorded with `capture_content=True`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ... import semconv as sc
from .. import common
from . import _classify as cl

__all__ = ["describe", "query_messages", "tool_arguments", "tool_name", "tool_result"]


def describe(
    kind: int, operation: str, instance: Any, cls_name: str, method: str, arguments: Mapping[str, Any], capture: bool
) -> tuple[str, dict[str, Any] | None]:
    """(span name, extra start attributes) of a span that is not a model call."""
    extra: dict[str, Any] | None = None
    if kind == cl.K_RETRIEVER:
        if capture:
            query = query_messages(arguments)
            if query is not None:
                extra = {sc.GEN_AI_INPUT_MESSAGES: query}
        return common.span_name(operation, cls_name), extra
    if kind == cl.K_TOOL:
        name = tool_name(instance) or cls_name
        extra = {sc.GEN_AI_TOOL_NAME: name}
        if capture:
            extra[sc.GEN_AI_TOOL_CALL_ARGUMENTS] = tool_arguments(arguments)
        return common.span_name(operation, name), extra
    if kind == cl.K_AGENT:
        agent_name = str(getattr(instance, "name", None) or cls_name)
        return common.span_name(operation, agent_name), {sc.GEN_AI_AGENT_NAME: agent_name}
    if kind == cl.K_WORKFLOW:
        return common.span_name(operation, cls_name), None
    # steps and chains: `Class.method` (a step's id is its function's qualname)
    return (f"{cls_name.rpartition('.')[2]}.{method}" if cls_name else method), None


def tool_name(instance: Any) -> str | None:
    try:
        name = instance.metadata.name
    except Exception:  # a user object's metadata may raise
        return None
    return name if isinstance(name, str) and name else None


def query_messages(arguments: Mapping[str, Any]) -> str | None:
    """A retriever's query (`str_or_query_bundle`), as an input message."""
    q = arguments.get("str_or_query_bundle", arguments.get("query"))
    if q is None:
        return None
    text = q if isinstance(q, str) else getattr(q, "query_str", None) or str(q)
    return json.dumps([{"role": "user", "parts": [{"type": "text", "content": text}]}], ensure_ascii=False)


def tool_arguments(arguments: Mapping[str, Any]) -> str:
    """A tool call's arguments: its keyword arguments (LlamaIndex tools take `**kwargs`)."""
    args = {k: v for k, v in arguments.items() if k != "self"}
    if set(args) == {"kwargs"} and isinstance(args["kwargs"], Mapping):
        args = dict(args["kwargs"])
    if set(args) == {"args", "kwargs"}:
        a, kw = args["args"], args["kwargs"]
        args = dict(kw) if not a else {"args": list(a), **dict(kw)}
    return json.dumps(args, default=str, ensure_ascii=False)


def tool_result(result: Any) -> str:
    content = getattr(result, "content", None)  # ToolOutput
    if isinstance(content, str):
        return content
    return result if isinstance(result, str) else json.dumps(result, default=str, ensure_ascii=False)
