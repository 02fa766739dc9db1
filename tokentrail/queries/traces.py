"""Traces: the most expensive ones, and one trace's span tree."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from ..store import Store
from .filters import SPANS, Filters, _utc, model_calls


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
    traces on cost alone (the fewest columns), then read everything else for the winners only
    (trace_id IN ..., found through the trace_id bloom filter)."""
    where = model_calls(filters or Filters(), now=now)
    ranked = store.rows(
        f"SELECT trace_id, sum(cost_usd) AS c, count() AS n, min(timestamp) FROM {SPANS} WHERE {where.sql} "
        f"GROUP BY trace_id ORDER BY c DESC NULLS LAST, n DESC, trace_id LIMIT {int(limit)}",
        where.params,
    )
    if not ranked:
        return []
    ids = [str(r[0]) for r in ranked]
    first = min(_utc(r[3]) for r in ranked)
    # the matching calls (same filters) and the whole trace, in one pass over the winners' spans;
    # a trace's spans start within a day of its first model call in practice
    match = f"({where.sql})"
    details = {
        str(r[0]): r[1:]
        for r in store.rows(
            f"SELECT trace_id, minIf(timestamp, {match}), countIf({match}), sumIf(input_tokens, {match}), "
            f"sumIf(output_tokens, {match}), countIf({match} AND status = 'error'), anyIf(user_id, {match}), "
            f"anyIf(feature, {match}), argMin(name, (parent_span_id != '', timestamp)), count(), "
            "dateDiff('microsecond', min(timestamp), "
            "max(timestamp + toIntervalMicrosecond(toInt64(duration_ms * 1000)))) / 1000 "
            f"FROM {SPANS} WHERE trace_id IN {{tt_ids:Array(String)}} "
            "AND timestamp >= {tt_t0:DateTime64(6, 'UTC')} - INTERVAL 1 DAY GROUP BY trace_id",
            {**where.params, "tt_ids": ids, "tt_t0": first.replace(tzinfo=None)},
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


def trace_spans(store: Store, trace_id: str) -> list[TraceSpan]:
    """Every span of one trace as a tree, depth first, children by start time. A span whose
    parent is not stored (an outer service's span) is shown as a root."""
    rows = store.rows(
        "SELECT span_id, parent_span_id, timestamp, duration_ms, name, operation, provider, "
        "if(response_model != '', response_model, request_model), input_tokens, output_tokens, "
        "cache_read_tokens, reasoning_tokens, cost_usd, cost_status, status, error_type, time_to_first_token_ms "
        f"FROM {SPANS} WHERE trace_id = {{trace_id:String}} ORDER BY timestamp, span_id",
        {"trace_id": trace_id},
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
