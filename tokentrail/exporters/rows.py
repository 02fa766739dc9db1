"""Span -> `tokentrail.spans` row encoding (JSONEachRow), kept apart from any transport."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from .. import semconv as sc

# attribute -> column, for attributes that have their own column (not repeated in the Map)
_COLUMN_ATTRS: dict[str, str] = {
    sc.GEN_AI_OPERATION_NAME: "operation",
    sc.FRAMEWORK: "framework",
    sc.PROJECT: "project",
    sc.ENVIRONMENT: "environment",
    sc.TEAM: "team",
    sc.FEATURE: "feature",
    sc.USER_ID: "user_id",
    sc.SESSION_ID: "session_id",
    sc.GEN_AI_PROVIDER_NAME: "provider",
    sc.GEN_AI_REQUEST_MODEL: "request_model",
    sc.GEN_AI_RESPONSE_MODEL: "response_model",
    sc.COST_STATUS: "cost_status",
    sc.ERROR_TYPE: "error_type",
}
_INT_ATTRS: dict[str, str] = {
    sc.GEN_AI_USAGE_INPUT_TOKENS: "input_tokens",
    sc.GEN_AI_USAGE_OUTPUT_TOKENS: "output_tokens",
    sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: "cache_read_tokens",
    sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: "cache_write_tokens",
    sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: "reasoning_tokens",
}
_DECIMAL_ATTRS: dict[str, str] = {
    sc.COST_USD: "cost_usd",
    sc.COST_INPUT_USD: "input_cost_usd",
    sc.COST_OUTPUT_USD: "output_cost_usd",
}


@functools.lru_cache(maxsize=4096)
def _second(sec: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(sec))


def _ts(ns: int) -> str:
    sec, rest = divmod(ns, 1_000_000_000)
    return f"{_second(sec)}.{rest // 1000:06d}"


def _str(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, Sequence):
        return json.dumps(list(v))
    return str(v)


def span_row(span: ReadableSpan) -> dict[str, Any]:
    """One row; columns left at their default are omitted (JSONEachRow fills them in), which
    keeps encoding cheap on the exporter thread."""
    attrs: Mapping[str, Any] = span.attributes or {}
    ctx = span.get_span_context()
    start = span.start_time or 0
    end = span.end_time or start
    parent = span.parent
    row: dict[str, Any] = {
        "timestamp": _ts(start),
        "duration_ms": (end - start) / 1e6,
        "trace_id": format(ctx.trace_id, "032x") if ctx else "",
        "span_id": format(ctx.span_id, "016x") if ctx else "",
        "name": span.name,
    }
    if parent is not None:
        row["parent_span_id"] = format(parent.span_id, "016x")
    service = span.resource.attributes.get("service.name") if span.resource else None
    if service:
        row["service_name"] = str(service)
    extra: dict[str, str] = {}
    for key, value in attrs.items():
        col = _COLUMN_ATTRS.get(key)
        if col is not None:
            row[col] = _str(value)
            continue
        col = _INT_ATTRS.get(key)
        if col is not None:
            row[col] = int(value)
            continue
        col = _DECIMAL_ATTRS.get(key)
        if col is not None:
            # cost travels as a decimal string: exact to the nano-dollar
            if value not in (None, ""):
                row[col] = str(value)
            continue
        if key == sc.TAGS:
            row["tags"] = [str(t) for t in value or ()]
        elif key == sc.USAGE_ESTIMATED:
            row["usage_estimated"] = bool(value)
        elif key == sc.TIME_TO_FIRST_TOKEN_MS:
            row["time_to_first_token_ms"] = value
        else:
            extra[key] = _str(value)
    if extra:
        row["attributes"] = extra
    if span.status.status_code is StatusCode.ERROR:
        row["status"] = "error"
        if not row.get("error_type"):
            row["error_type"] = "_OTHER"
    else:
        row["status"] = "ok"
    return row


def encode(rows: Iterable[Mapping[str, Any]]) -> bytes:
    """JSONEachRow bytes, the one format used by the spool and by server inserts."""
    return b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in rows)


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    return encode(span_row(s) for s in spans)
