"""Span -> `tokentrail.spans` row encoding (JSONEachRow), kept apart from any transport."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
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
_SKIP = {sc.TAGS, sc.USAGE_ESTIMATED, sc.TIME_TO_FIRST_TOKEN_MS}


def _ts(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def _str(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, Sequence):
        return json.dumps(list(v))
    return str(v)


def span_row(span: ReadableSpan) -> dict[str, Any]:
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
        "parent_span_id": format(parent.span_id, "016x") if parent else "",
        "name": span.name,
        "operation": "",
        "framework": "",
        "service_name": str(span.resource.attributes.get("service.name", "")) if span.resource else "",
        "project": "",
        "environment": "",
        "team": "",
        "feature": "",
        "user_id": "",
        "session_id": "",
        "tags": [str(t) for t in attrs.get(sc.TAGS, ()) or ()],
        "provider": "",
        "request_model": "",
        "response_model": "",
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "usage_estimated": bool(attrs.get(sc.USAGE_ESTIMATED, False)),
        "input_cost_usd": None,
        "output_cost_usd": None,
        "cost_usd": None,
        "cost_status": "",
        "status": "error" if span.status.status_code is StatusCode.ERROR else "ok",
        "error_type": "",
        "time_to_first_token_ms": attrs.get(sc.TIME_TO_FIRST_TOKEN_MS),
        "attributes": {},
    }
    extra: dict[str, str] = {}
    for key, value in attrs.items():
        if key in _COLUMN_ATTRS:
            row[_COLUMN_ATTRS[key]] = _str(value)
        elif key in _INT_ATTRS:
            row[_INT_ATTRS[key]] = int(value)
        elif key in _DECIMAL_ATTRS:
            # cost travels as a decimal string: exact to the nano-dollar
            row[_DECIMAL_ATTRS[key]] = None if value in (None, "") else str(value)
        elif key not in _SKIP:
            extra[key] = _str(value)
    row["attributes"] = extra
    if row["status"] == "error" and not row["error_type"]:
        row["error_type"] = "_OTHER"
    return row


def encode(rows: Iterable[Mapping[str, Any]]) -> bytes:
    """JSONEachRow bytes, the one format used by the spool and by server inserts."""
    return b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in rows)


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    return encode(span_row(s) for s in spans)
