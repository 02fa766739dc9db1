"""Reading what a span needs from LangChain's callback arguments (by duck typing, no copies)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration

from ... import semconv as sc
from ... import tokens

# invocation_params keys that name the requested model, in the order integrations use them
_MODEL_KEYS = ("model", "model_name", "model_id", "deployment_name", "azure_deployment", "engine", "repo_id")
_MAX_TOKENS_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "max_new_tokens", "num_predict")

# LangGraph raises these to steer a graph (interrupts, jumps to a parent graph): not errors
_CONTROL_FLOW_ERRORS = frozenset({"GraphBubbleUp", "GraphInterrupt", "NodeInterrupt", "ParentCommand"})


def request_model(invocation_params: Mapping[str, Any] | None, metadata: Mapping[str, Any] | None) -> str | None:
    if invocation_params:
        for key in _MODEL_KEYS:
            v = invocation_params.get(key)
            if v and isinstance(v, str):
                return v
    if metadata:
        v = metadata.get("ls_model_name")
        if v and isinstance(v, str):
            return v
    return None


def class_name(serialized: Mapping[str, Any] | None, invocation_params: Mapping[str, Any] | None) -> str | None:
    """The model's class name ("ChatOpenAI"), else LangChain's `_type` ("openai-chat")."""
    if serialized:
        ident = serialized.get("id")
        if isinstance(ident, Sequence) and ident and isinstance(ident[-1], str):
            return ident[-1]
        name = serialized.get("name")
        if isinstance(name, str):
            return name
    if invocation_params:
        t = invocation_params.get("_type")
        if isinstance(t, str):
            return t
    return None


_MAX_TOKENS_ORDER = (*_MAX_TOKENS_KEYS, "ls_max_tokens")
_MAX_TOKENS_SET = frozenset(_MAX_TOKENS_ORDER)


def max_output_tokens(invocation_params: Mapping[str, Any] | None, metadata: Mapping[str, Any] | None) -> int | None:
    for source in (invocation_params, metadata):
        if not source or _MAX_TOKENS_SET.isdisjoint(source):
            continue
        for key in _MAX_TOKENS_ORDER:
            v = source.get(key)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
    return None


def temperature(invocation_params: Mapping[str, Any] | None) -> float | None:
    if invocation_params:
        v = invocation_params.get("temperature")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return None


def response_model(response: Any) -> str | None:
    """The model that answered: llm_output["model_name"], else a generation's response_metadata."""
    llm_output = getattr(response, "llm_output", None)
    if isinstance(llm_output, Mapping):
        v = llm_output.get("model_name") or llm_output.get("model")
        if v and isinstance(v, str):
            return v
    for gens in getattr(response, "generations", None) or ():
        for gen in gens if isinstance(gens, Sequence) else (gens,):
            msg = getattr(gen, "message", None)
            rm = getattr(msg, "response_metadata", None)
            if isinstance(rm, Mapping):
                v = rm.get("model_name") or rm.get("model")
                if v and isinstance(v, str):
                    return v
            info = getattr(gen, "generation_info", None)
            if isinstance(info, Mapping):
                v = info.get("model_name") or info.get("model")
                if v and isinstance(v, str):
                    return v
    return None


def finish_reasons(response: Any) -> list[str]:
    out: list[str] = []
    for gens in getattr(response, "generations", None) or ():
        for gen in gens if isinstance(gens, Sequence) else (gens,):
            info = getattr(gen, "generation_info", None)
            reason = None
            if isinstance(info, Mapping):
                reason = info.get("finish_reason") or info.get("stop_reason")
            if reason is None:
                rm = getattr(getattr(gen, "message", None), "response_metadata", None)
                if isinstance(rm, Mapping):
                    reason = rm.get("finish_reason") or rm.get("stop_reason")
            if isinstance(reason, str):
                out.append(reason)
    return out


def generated_text(response: Any) -> str:
    """All text the model produced (every generation: with n>1 each was generated and billed)."""
    parts: list[str] = []
    for gens in getattr(response, "generations", None) or ():
        for gen in gens if isinstance(gens, Sequence) else (gens,):
            text = getattr(gen, "text", None)
            if not text:
                msg = getattr(gen, "message", None)
                text = tokens.text_of(getattr(msg, "content", None)) if msg is not None else ""
                calls = getattr(msg, "tool_calls", None)
                if calls:
                    text += json.dumps([c.get("args") for c in calls if isinstance(c, Mapping)], default=str)
            if text:
                parts.append(text)
    return "".join(parts)


def is_cache_hit(response: Any) -> bool:
    """True when every generation came from LangChain's LLM cache: langchain-core keeps a cached
    message's counts but stamps usage_metadata["total_cost"] = 0 on it (see usage.py's
    is_langchain_cache_hit; this is the same test without getattr misses on pydantic models,
    which cost ~50 µs each on the hot path)."""
    generations = getattr(response, "generations", None)
    if not generations:
        return False
    for gens in generations:
        for gen in gens:
            if not isinstance(gen, ChatGeneration):
                return False
            um = gen.message.usage_metadata if isinstance(gen.message, AIMessage) else None
            if not um or not isinstance(um, Mapping):  # a broken proxy may send anything
                return False
            cost = um.get("total_cost")  # type: ignore[misc]
            if cost is None or isinstance(cost, bool) or cost != 0:
                return False
    return True


def is_control_flow(error: BaseException) -> bool:
    return any(cls.__name__ in _CONTROL_FLOW_ERRORS for cls in type(error).__mro__)


# -- content capture (settings.capture_content) --------------------------------------------


def _role(message: Any) -> str:
    t = getattr(message, "type", None) or (message.get("role") if isinstance(message, Mapping) else None)
    return {"human": "user", "ai": "assistant"}.get(str(t), str(t or "user"))


def input_messages_json(messages: Sequence[Any] | None, prompts: Sequence[str] | None) -> str:
    """gen_ai.input.messages: [{"role", "parts": [{"type": "text", "content"}]}]."""
    out: list[dict[str, Any]] = []
    for m in messages or ():
        out.append({"role": _role(m), "parts": [{"type": "text", "content": tokens.text_of(getattr(m, "content", m))}]})
    for p in prompts or ():
        out.append({"role": "user", "parts": [{"type": "text", "content": p}]})
    return json.dumps(out, default=str, ensure_ascii=False)


def output_messages_json(response: Any) -> str:
    out: list[dict[str, Any]] = []
    reasons = finish_reasons(response)
    i = 0
    for gens in getattr(response, "generations", None) or ():
        for gen in gens if isinstance(gens, Sequence) else (gens,):
            msg = getattr(gen, "message", None)
            text = getattr(gen, "text", None) or tokens.text_of(getattr(msg, "content", None))
            parts: list[dict[str, Any]] = [{"type": "text", "content": text}]
            for call in getattr(msg, "tool_calls", None) or ():
                if isinstance(call, Mapping):
                    parts.append({"type": "tool_call", "id": call.get("id"), "name": call.get("name"), "arguments": call.get("args")})
            item: dict[str, Any] = {"role": "assistant", "parts": parts}
            if i < len(reasons):
                item["finish_reason"] = reasons[i]
            out.append(item)
            i += 1
    return json.dumps(out, default=str, ensure_ascii=False)


def text_json(value: Any) -> str:
    if isinstance(value, str):
        return value
    content = getattr(value, "content", None)
    if isinstance(content, str):
        return content
    return json.dumps(value, default=str, ensure_ascii=False)


CONTENT_INPUT = sc.GEN_AI_INPUT_MESSAGES
CONTENT_OUTPUT = sc.GEN_AI_OUTPUT_MESSAGES



def serialized_name(serialized: Mapping[str, Any] | None) -> str | None:
    if not serialized:
        return None
    name = serialized.get("name")
    if isinstance(name, str) and name:
        return name
    ident = serialized.get("id")
    if isinstance(ident, Sequence) and ident and isinstance(ident[-1], str):
        return ident[-1]
    return None
