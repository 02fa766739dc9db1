"""Traces: the most expensive ones, and one trace's span tree."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from ..store import Store
from .filters import Filters, _utc, model_calls
from .source import TRACES, facts


def _naive(t: datetime) -> datetime:
    return t.astimezone(timezone.utc).replace(tzinfo=None)


# -- traces ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class TraceSummary:
    trace_id: str
    start: datetime
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal | None
    errors: int
    user_id: str
    feature: str
    root_name: str = ""
    spans: int = 0
    duration_ms: float = 0.0


def top_traces(store: Store, filters: Filters | None = None, *, limit: int = 50, now: datetime | None = None) -> list[TraceSummary]:
    """The most expensive traces: their matching model calls' cost, tokens and errors, with the
    root span's name, the span count and the wall time of each.

    Two steps, because grouping a month of spans by trace id is the expensive part: rank the
    traces on cost alone (from the traces_hourly rollup when only time is filtered), then read
    everything else for the winners only, within their time range (the trace index)."""
    filters = filters or Filters()
    src = facts(store, filters, now=now, need=("trace_key",), among=(TRACES,))
    ranked = store.rows(
        "SELECT any(trace_id) AS tid, if(sum(priced_calls) = 0, NULL, sum(cost_usd)) AS c, sum(calls) AS n, "
        f"min(min_timestamp) FROM {src.sql} GROUP BY trace_key "
        f"ORDER BY c DESC NULLS LAST, n DESC, tid LIMIT {int(limit)}",
        src.params,
    )
    if not ranked:
        return []
    ids = [str(r[0]) for r in ranked]
    where = model_calls(filters, now=now)
    lo, hi = trace_range(store, ids)
    if lo is None:  # no trace index: a trace's spans start within a day of its first model call in practice
        lo, hi = min(_utc(r[3]) for r in ranked) - timedelta(days=1), None
    # the matching calls (same filters) and the whole trace, in one pass over the winners' spans
    match = f"({where.sql})"
    bound = "timestamp >= {tt_lo:DateTime64(6, 'UTC')}"
    params: dict[str, Any] = {**where.params, "tt_ids": ids, "tt_lo": _naive(lo)}
    if hi is not None:
        bound += " AND timestamp <= {tt_hi:DateTime64(6, 'UTC')}"
        params["tt_hi"] = _naive(hi)
    details = {
        str(r[0]): r[1:]
        for r in store.rows(
            f"SELECT trace_id, minIf(timestamp, {match}), countIf({match}), sumIf(input_tokens, {match}), "
            f"sumIf(output_tokens, {match}), countIf({match} AND status = 'error'), anyIf(user_id, {match}), "
            f"anyIf(feature, {match}), argMin(name, (parent_span_id != '', timestamp)), count(), "
            "dateDiff('microsecond', min(timestamp), "
            "max(timestamp + toIntervalMicrosecond(toInt64(duration_ms * 1000)))) / 1000 "
            f"FROM {store.table('spans')} WHERE trace_id IN {{tt_ids:Array(String)}} AND {bound} GROUP BY trace_id",
            params,
        )
    }
    out: list[TraceSummary] = []
    for trace_id, cost, _, _ in ranked:
        start, calls, inp, outp, errors, user, feature, root, n, dur = details[str(trace_id)]
        out.append(
            TraceSummary(
                trace_id=str(trace_id),
                start=_utc(start),
                calls=int(calls),
                input_tokens=int(inp),
                output_tokens=int(outp),
                cost_usd=None if cost is None else Decimal(cost),
                errors=int(errors),
                user_id=str(user),
                feature=str(feature),
                root_name=str(root),
                spans=int(n),
                duration_ms=float(dur or 0.0),
            )
        )
    return out


@dataclass(frozen=True)
class TraceSpan:
    """One span of a trace, with its depth in the tree (0 = root)."""

    span_id: str
    parent_span_id: str
    depth: int
    start: datetime
    duration_ms: float
    name: str
    operation: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal | None
    cost_status: str
    status: str
    error_type: str
    time_to_first_token_ms: float | None


def trace_range(store: Store, trace_ids: list[str]) -> tuple[datetime | None, datetime | None]:
    """The first and last span start of these traces, from the trace index (None, None without
    one, or when it does not know them)."""
    if not store.rollups or not trace_ids:
        return None, None
    lo, hi = store.rows(
        f"SELECT min(min_timestamp), max(max_timestamp) FROM {store.table('trace_index')} "
        "WHERE trace_id IN {ids:Array(String)}",
        {"ids": trace_ids},
    )[0]
    # min() over no rows is the epoch, not NULL
    if lo is None or hi is None or _utc(hi).year < 1971:
        return None, None
    return _utc(lo), _utc(hi)


def trace_spans(store: Store, trace_id: str) -> list[TraceSpan]:
    """Every span of one trace as a tree, depth first, children by start time. A span whose
    parent is not stored (an outer service's span) is shown as a root."""
    lo, hi = trace_range(store, [trace_id])
    bound = ""
    params: dict[str, Any] = {"trace_id": trace_id}
    if lo is not None and hi is not None:  # read by trace id within its range, not the whole table
        bound = " AND timestamp >= {lo:DateTime64(6, 'UTC')} AND timestamp <= {hi:DateTime64(6, 'UTC')}"
        params.update(lo=_naive(lo), hi=_naive(hi))
    rows = store.rows(
        "SELECT span_id, parent_span_id, timestamp, duration_ms, name, operation, provider, "
        "if(response_model != '', response_model, request_model), input_tokens, output_tokens, "
        "cache_read_tokens, reasoning_tokens, cost_usd, cost_status, status, error_type, time_to_first_token_ms "
        f"FROM {store.table('spans')} WHERE trace_id = {{trace_id:String}}{bound} ORDER BY timestamp, span_id",
        params,
    )
    by_id = {str(r[0]): r for r in rows}
    children: dict[str, list[Any]] = {}
    roots: list[Any] = []
    for r in rows:
        parent = str(r[1])
        if parent and parent in by_id and parent != str(r[0]):
            children.setdefault(parent, []).append(r)
        else:
            roots.append(r)
    out: list[TraceSpan] = []
    seen: set[str] = set()
    stack = [(r, 0) for r in reversed(roots)]
    while stack:
        r, depth = stack.pop()
        sid = str(r[0])
        if sid in seen:  # a malformed trace (a cycle) must not loop
            continue
        seen.add(sid)
        out.append(
            TraceSpan(
                span_id=sid,
                parent_span_id=str(r[1]),
                depth=depth,
                start=_utc(r[2]),
                duration_ms=float(r[3]),
                name=str(r[4]),
                operation=str(r[5]),
                provider=str(r[6]),
                model=str(r[7]),
                input_tokens=int(r[8]),
                output_tokens=int(r[9]),
                cache_read_tokens=int(r[10]),
                reasoning_tokens=int(r[11]),
                cost_usd=None if r[12] is None else Decimal(r[12]),
                cost_status=str(r[13]),
                status=str(r[14]),
                error_type=str(r[15]),
                time_to_first_token_ms=None if r[16] is None else float(r[16]),
            )
        )
        stack.extend((c, depth + 1) for c in reversed(children.get(sid, [])))
    return out
