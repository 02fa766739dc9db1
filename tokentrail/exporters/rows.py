"""Span -> `tokentrail.spans` row encoding (JSONEachRow), kept apart from any transport.

The last gate before the store: whatever a span carries (any instrumentation may set our
attribute names), every row encoded here is one the store accepts. A token count that is no
count, a cost Decimal(18, 9) cannot hold, a time to first token that is no number, a timestamp
out of DateTime64's range, text that is not UTF-8: each is dropped or clamped, its raw value kept
in `attributes` with a flag (tokentrail.usage.invalid, tokentrail.cost.invalid), and the span is
stored. A span whose encoding still fails is stored as a minimal row saying why, never dropped.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from .. import semconv as sc
from ..usage import MAX_TOKENS, cost_or_none, count_or_none, raw_text

logger = logging.getLogger("tokentrail.exporter")

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
    sc.SERVICE_TIER: "service_tier",
    sc.PRICE_ID: "price_id",
    sc.PRICE_VERSION: "price_version",
}
_INT_ATTRS: dict[str, str] = {
    sc.GEN_AI_USAGE_INPUT_TOKENS: "input_tokens",
    sc.GEN_AI_USAGE_OUTPUT_TOKENS: "output_tokens",
    sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: "cache_read_tokens",
    sc.GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: "cache_write_tokens",
    sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: "reasoning_tokens",
    sc.USAGE_CACHE_WRITE_1H_TOKENS: "cache_write_1h_tokens",
    sc.USAGE_WEB_SEARCH_REQUESTS: "web_search_requests",
}
_DECIMAL_ATTRS: dict[str, str] = {
    sc.COST_USD: "cost_usd",
    sc.COST_INPUT_USD: "input_cost_usd",
    sc.COST_OUTPUT_USD: "output_cost_usd",
    sc.COST_FEES_USD: "fees_usd",
}


# a cost as our instrumentation writes it: fixed point, at most 9 places, fits Decimal(18, 9)
_PLAIN_COST = re.compile(r"-?\d{1,9}(\.\d{1,9})?")
ENCODE_ERROR = "tokentrail.encode_error"
# DateTime64(6, 'UTC') holds 1900-01-01 to 2299-12-31; span times are ns since 1970
_MAX_NS = 10_413_791_999_999_999_000


@functools.lru_cache(maxsize=4096)
def _second(sec: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(sec))


def _ts(ns: int) -> str:
    if not 0 <= ns <= _MAX_NS:
        ns = min(max(ns, 0), _MAX_NS)
    sec, rest = divmod(ns, 1_000_000_000)
    return f"{_second(sec)}.{rest // 1000:06d}"


def _cost(value: Any) -> str | None:
    if isinstance(value, str) and _PLAIN_COST.fullmatch(value):
        return value
    d = cost_or_none(value)
    return None if d is None else format(d, "f")


def _float(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


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
    bad_usage: list[str] = []
    bad_cost: list[str] = []
    for key, value in attrs.items():
        col = _COLUMN_ATTRS.get(key)
        if col is not None:
            row[col] = _str(value)
            continue
        col = _INT_ATTRS.get(key)
        if col is not None:
            if type(value) is int and 0 <= value <= MAX_TOKENS:
                row[col] = value
            else:
                n = count_or_none(value)
                if n is None:
                    bad_usage.append(f"{key}={raw_text(value)}")
                else:
                    row[col] = n
            continue
        col = _DECIMAL_ATTRS.get(key)
        if col is not None:
            # cost travels as a decimal string: exact to the nano-dollar
            if value not in (None, ""):
                cost = _cost(value)
                if cost is None:
                    bad_cost.append(f"{key}={raw_text(value)}")
                else:
                    row[col] = cost
            continue
        if key in sc.GEN_AI_USAGE_COST_DERIVED:  # gen_ai.usage.cost: a float copy of cost_usd
            continue
        if key == sc.TAGS:
            row["tags"] = [value] if isinstance(value, str) else [str(t) for t in value or ()]
        elif key == sc.USAGE_ESTIMATED:
            row["usage_estimated"] = bool(value)
        elif key == sc.TIME_TO_FIRST_TOKEN_MS:
            ttft = _float(value)
            if ttft is None:
                extra[key] = _str(value)
            else:
                row["time_to_first_token_ms"] = ttft
        else:
            extra[key] = _str(value)
    if bad_usage:
        extra[sc.USAGE_INVALID] = json.dumps([*json.loads(extra.get(sc.USAGE_INVALID, "[]")), *bad_usage])
    if bad_cost:
        extra[sc.COST_INVALID] = json.dumps(bad_cost)
        if "cost_usd" not in row:  # no known cost: it counts as unpriced, not as $0
            row["cost_status"] = sc.COST_UNPRICED
    if extra:
        row["attributes"] = extra
    if span.status.status_code is StatusCode.ERROR:
        row["status"] = "error"
        if not row.get("error_type"):
            row["error_type"] = "_OTHER"
    else:
        row["status"] = "ok"
    return row


def safe_row(span: ReadableSpan) -> dict[str, Any]:
    """span_row, or when that fails (a bug, a broken span), a minimal row that keeps the span
    in the ledger and says why."""
    try:
        return span_row(span)
    except Exception as e:  # the span is kept without attributes rather than lost
        logger.warning("tokentrail: span %r encoded without its attributes (%s)", getattr(span, "name", "?"), e)
        ctx = span.get_span_context()
        return {
            "timestamp": _ts(span.start_time or 0),
            "trace_id": format(ctx.trace_id, "032x") if ctx else "",
            "span_id": format(ctx.span_id, "016x") if ctx else "",
            "name": _str(getattr(span, "name", "")),
            "status": "error",
            "error_type": "tokentrail.encode_error",
            "attributes": {ENCODE_ERROR: raw_text(e, 300)},
        }


_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _line(row: Mapping[str, Any]) -> bytes:
    text = _json(row)
    try:
        return text.encode() + b"\n"
    except UnicodeEncodeError:  # lone surrogates: the store takes UTF-8 only
        return text.encode("utf-8", "replace") + b"\n"


def encode(rows: Iterable[Mapping[str, Any]]) -> bytes:
    """JSONEachRow bytes, the one format used by the spool and by server inserts."""
    return b"".join(_line(r) for r in rows)


def span_rows(spans: Sequence[ReadableSpan]) -> list[dict[str, Any]]:
    return [safe_row(s) for s in spans]


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    return encode(span_rows(spans))
