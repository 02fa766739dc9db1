"""Spans -> `spans` columns for a server's columnar (Native) insert, without a dict per row.

The same rows as rows.py's span_row, built straight into one list per column: a span whose
attributes are all of the usual kinds (text in text columns, counts in count columns, costs as
the instrumentation writes them, other attributes as text) is written by the fast loop below;
any other span (a bad count, a float cost, tags, a time to first token...) is written from
span_row's dict, so every rule of the last gate lives in one place. tests/test_exporter_columns.py
checks both against span_row.

Measured (bench/server_ingest.py): JSONEachRow costs ~12 µs a span in Python (the dict, then
json) and the server parses text; these columns cost ~3 µs and the server reads them as is.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from .. import semconv as sc
from ..semconv import GEN_AI_USAGE_COST_DERIVED as DERIVED
from ..store.schema import PRICE_COLUMNS, SPANS_COLUMNS
from ..usage import MAX_TOKENS
from .rows import _COLUMN_ATTRS, _DECIMAL_ATTRS, _INT_ATTRS, _MAX_NS, _PLAIN_COST, safe_row

__all__ = ["COLUMN_NAMES", "COLUMN_TYPES", "native_block", "span_columns"]

_ALL: dict[str, str] = {**SPANS_COLUMNS, **PRICE_COLUMNS}
COLUMN_NAMES: tuple[str, ...] = tuple(_ALL)
# text goes as String (the server turns it into LowCardinality itself: cheaper than the client's
# dictionary encoding in Python); the rest as the table's own types
COLUMN_TYPES: tuple[str, ...] = tuple(
    "String" if t == "LowCardinality(String)" else t for t in _ALL.values()
)
_INDEX = {name: i for i, name in enumerate(COLUMN_NAMES)}
_DEFAULTS: tuple[Any, ...] = tuple(
    0.0 if t == "Float64" else 0 if t.startswith("UInt") else False if t == "Bool" else None
    if t.startswith("Nullable") else () if t.startswith("Array") else {} if t.startswith("Map") else ""
    for t in _ALL.values()
)  # fmt: skip
_DECIMAL_COLUMNS = frozenset(i for i, t in enumerate(_ALL.values()) if "Decimal" in t)
_TS, _DUR, _TRACE, _SPAN, _PARENT, _NAME = (
    _INDEX[c] for c in ("timestamp", "duration_ms", "trace_id", "span_id", "parent_span_id", "name")
)
_SERVICE, _STATUS, _ERROR, _ATTRS = (
    _INDEX[c] for c in ("service_name", "status", "error_type", "attributes")
)

# attribute -> (column index, kind): 0 text, 1 count, 2 cost
_FAST: dict[str, tuple[int, int]] = {
    **{k: (_INDEX[c], 0) for k, c in _COLUMN_ATTRS.items()},
    **{k: (_INDEX[c], 1) for k, c in _INT_ATTRS.items()},
    **{k: (_INDEX[c], 2) for k, c in _DECIMAL_ATTRS.items()},
}
# attributes span_row treats apart (tags, flags, derived copies...): such a span takes the slow way
_SLOW = (
    frozenset(
        {sc.TAGS, sc.USAGE_ESTIMATED, sc.TIME_TO_FIRST_TOKEN_MS, sc.USAGE_INVALID, sc.COST_INVALID}
    )
    | DERIVED
)


def _attributes(span: ReadableSpan) -> Mapping[str, Any]:
    # the SDK's BoundedAttributes iterates in Python (a MutableMapping); its dict in C: 3x faster
    raw = getattr(span, "_attributes", None)
    inner = getattr(raw, "_dict", None)
    if type(inner) is dict:
        return inner
    return span.attributes or {}


def _fast(span: ReadableSpan, i: int, cols: list[list[Any]], services: dict[int, str]) -> bool:
    """Write span i into the columns; False (nothing final written) when it needs span_row."""
    attrs = _attributes(span)
    extra: dict[str, str] | None = None
    fast, slow = _FAST, _SLOW
    for key, value in attrs.items():
        hit = fast.get(key)
        if hit is None:
            if key in slow or type(value) is not str:
                return False
            if extra is None:
                extra = {}
            extra[key] = value
            continue
        col, kind = hit
        if kind == 0:
            if type(value) is not str:
                return False
            cols[col][i] = value
        elif kind == 1:
            if type(value) is not int or not 0 <= value <= MAX_TOKENS:
                return False
            cols[col][i] = value
        elif value not in (None, ""):
            if type(value) is not str or not _PLAIN_COST.fullmatch(value):
                return False
            cols[col][i] = value
    ctx = span.get_span_context()
    start = span.start_time or 0
    if ctx is None or not 0 <= start <= _MAX_NS:
        return False
    end = span.end_time or start
    cols[_TS][i] = start // 1000
    cols[_DUR][i] = (end - start) / 1e6
    cols[_TRACE][i] = format(ctx.trace_id, "032x")
    cols[_SPAN][i] = format(ctx.span_id, "016x")
    cols[_NAME][i] = span.name
    parent = span.parent
    if parent is not None:
        cols[_PARENT][i] = format(parent.span_id, "016x")
    resource = span.resource
    rid = id(resource)
    service = services.get(rid)
    if service is None:
        name = resource.attributes.get("service.name") if resource else None
        service = services[rid] = str(name) if name else ""
    cols[_SERVICE][i] = service
    if extra is not None:
        cols[_ATTRS][i] = extra
    if span.status.status_code is StatusCode.ERROR:
        cols[_STATUS][i] = "error"
        if not cols[_ERROR][i]:
            cols[_ERROR][i] = "_OTHER"
    else:
        cols[_STATUS][i] = "ok"
    return True


def _from_row(row: Mapping[str, Any], i: int, cols: list[list[Any]]) -> None:
    for c, default in enumerate(_DEFAULTS):
        cols[c][i] = default
    for name, value in row.items():
        c = _INDEX[name]
        if c == _TS:
            value = _micros(value)
        cols[c][i] = value


def _micros(text: str) -> int:
    from datetime import datetime, timezone

    dt = datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
    sec = int(dt.replace(microsecond=0).timestamp())
    return sec * 1_000_000 + dt.microsecond


def span_columns(spans: Sequence[ReadableSpan]) -> list[list[Any]]:
    """One list per column of COLUMN_NAMES, values of COLUMN_TYPES (timestamps as microseconds
    since 1970, costs as decimal text). Never fails a span (see rows.safe_row)."""
    n = len(spans)
    cols = [[d] * n for d in _DEFAULTS]
    services: dict[int, str] = {}
    for i, span in enumerate(spans):
        ok = False
        try:
            ok = _fast(span, i, cols, services)
        except Exception:  # an odd span: span_row (and safe_row's fallback) decide what is stored
            ok = False
        if not ok:
            _from_row(safe_row(span), i, cols)
    for c in _DECIMAL_COLUMNS:  # clickhouse-connect reads Decimal(str(x)): text is exact
        col = cols[c]
        if any(type(v) is Decimal for v in col):
            cols[c] = [format(v, "f") if type(v) is Decimal else v for v in col]
    return cols


@functools.lru_cache(maxsize=1)
def _types() -> tuple[Any, ...]:
    from clickhouse_connect.datatypes.registry import get_from_name

    return tuple(get_from_name(t) for t in COLUMN_TYPES)


_FORMAT = b" FORMAT Native\n"


def native_block(columns: Sequence[Sequence[Any]]) -> bytes:
    """The columns as one Native block (clickhouse-connect's own serialisation), made here so
    that a value it cannot write fails on this thread, before anything is sent. One block: the
    batch id is the deduplication token of exactly one block, whichever format carries it."""
    from clickhouse_connect.driver.insert import InsertContext
    from clickhouse_connect.driver.transform import NativeTransform

    n = len(columns[0]) if columns else 0
    ctx = InsertContext(
        "spans", COLUMN_NAMES, _types(), data=columns, column_oriented=True, block_size=max(n, 1)
    )
    body = b"".join(NativeTransform.build_insert(ctx))
    if ctx.insert_exception is not None:
        raise ctx.insert_exception
    # the client's body starts with its INSERT statement (it POSTs the query with the data);
    # raw_insert sends the statement itself: keep the data only
    head = body.find(_FORMAT, 0, 4096)
    if not body.startswith(b"INSERT INTO ") or head < 0:
        raise ValueError("clickhouse-connect's Native block has an unexpected start")
    return body[head + len(_FORMAT) :]
