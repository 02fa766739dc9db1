"""Prompts, completions, tool arguments and results on spans, only with `capture_content=True`
(off by default: they may hold personal data). Same shapes as the LangChain integration:
`gen_ai.input.messages` / `gen_ai.output.messages` as [{"role", "parts": [{"type": "text",
"content"}]}] JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ...tokens import text_of
from . import _usage as lu

TOOL_ARGUMENTS = "gen_ai.tool.call.arguments"
TOOL_RESULT = "gen_ai.tool.call.result"


def _role(message: Any) -> str:
    role = getattr(message, "role", None)
    role = getattr(role, "value", role)
    return str(role) if role else "user"


def input_messages(messages: Sequence[Any] | None, prompt: str | None) -> str:
    out: list[dict[str, Any]] = []
    for m in messages or ():
        out.append({"role": _role(m), "parts": [{"type": "text", "content": text_of(getattr(m, "content", m))}]})
    if prompt is not None:
        out.append({"role": "user", "parts": [{"type": "text", "content": prompt}]})
    return json.dumps(out, default=str, ensure_ascii=False)


def output_messages(response: Any) -> str:
    parts: list[dict[str, Any]] = [{"type": "text", "content": lu.response_text(response)}]
    message = getattr(response, "message", None)
    for call in (getattr(message, "additional_kwargs", None) or {}).get("tool_calls") or ():
        fn = call.get("function") if isinstance(call, Mapping) else getattr(call, "function", None)
        parts.append(
            {
                "type": "tool_call",
                "name": fn.get("name") if isinstance(fn, Mapping) else getattr(fn, "name", None),
                "arguments": fn.get("arguments") if isinstance(fn, Mapping) else getattr(fn, "arguments", None),
            }
        )
    return json.dumps([{"role": "assistant", "parts": parts}], default=str, ensure_ascii=False)


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
