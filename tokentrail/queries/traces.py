"""Traces: the most expensive ones, and one trace's span tree."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from ..store import Store
from .filters import Filters, _utc, naive_utc
from .source import TRACES, facts


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
    root span's name, the span count and the wall time of each. Ties: more calls first, then
    by trace key (sipHash128 of the id).

    In steps, because grouping a month of spans by trace id is the expensive part: rank the
    traces on cost alone by a fixed-size key (from the traces_hourly rollup when only time is
    filtered), then the winners' matching calls from the same rows, then each winner as a
    whole (spans, root, wall time) from the trace index."""
    filters = filters or Filters()
    # ranked on the three columns it sums (a union names only what is read: 2x faster)
    rank = facts(store, filters, now=now, need=("trace_key",), among=(TRACES,), metrics=("calls", "priced_calls", "cost_usd"))
    ranked = store.rows(
        "SELECT trace_key, if(sum(priced_calls) = 0, NULL, sum(cost_usd)) AS c, sum(calls) AS n "
        f"FROM {rank.sql} GROUP BY trace_key ORDER BY c DESC NULLS LAST, n DESC, trace_key LIMIT {int(limit)}",
        rank.params,
    )
    src = facts(store, filters, now=now, need=("trace_key",), among=(TRACES,))
    if not ranked:
        return []
    keys = [r[0] for r in ranked]
    # the winners' matching calls, from the same rows
    win = {
        r[0]: r[1:]
        for r in store.rows(
            "SELECT trace_key, any(trace_id), min(min_timestamp), sum(calls), sum(input_tokens), sum(output_tokens), "
            f"sum(errors), any(user_id), any(feature) FROM {src.sql} WHERE trace_key IN {{tt_keys:Array(UInt128)}} "
            "GROUP BY trace_key",
            {**src.params, "tt_keys": keys},
        )
    }
    ids = [str(win[k][0]) for k in keys]
    whole = trace_wholes(store, ids, since=min(_utc(w[1]) for w in win.values()))
    out: list[TraceSummary] = []
    for key, (_, cost, _) in zip(keys, ranked, strict=True):
        trace_id, start, calls, inp, outp, errors, user, feature = win[key]
        n, root, dur = whole.get(str(trace_id), (0, "", 0.0))
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


def trace_wholes(store: Store, trace_ids: list[str], *, since: datetime) -> dict[str, tuple[int, str, float]]:
    """{trace id: (spans, root span's name, wall time in ms)} of whole traces: from the trace
    index, or from the spans (those that start within a day before `since`, a trace's first
    model call: in practice the whole trace)."""
    dur = "dateDiff('microsecond', {lo}, {hi}) / 1000"
    if store.rollups:
        rows = store.rows(
            f"SELECT trace_id, sum(spans), argMinMerge(root), {dur.format(lo='min(min_timestamp)', hi='max(max_end)')} "
            # PREWHERE: the ids' granules first, the root states of those only (measured 2x)
            f"FROM {store.table('trace_index')} PREWHERE trace_id IN {{ids:Array(String)}} GROUP BY trace_id",
            {"ids": trace_ids},
        )
    else:
        end = "max(timestamp + toIntervalMicrosecond(toInt64(duration_ms * 1000)))"
        rows = store.rows(
            f"SELECT trace_id, count(), argMin(name, (parent_span_id != '', timestamp)), {dur.format(lo='min(timestamp)', hi=end)} "
            f"FROM {store.table('spans')} WHERE trace_id IN {{ids:Array(String)}} "
            "AND timestamp >= {lo:DateTime64(6, 'UTC')} GROUP BY trace_id",
            {"ids": trace_ids, "lo": naive_utc(since - timedelta(days=1))},
        )
    return {str(t): (int(n), str(root), float(d or 0.0)) for t, n, root, d in rows}


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


def trace_ranges(store: Store, trace_ids: list[str]) -> dict[str, tuple[datetime, datetime]]:
    """{trace id: (first span start, last span start)} from the trace index, for the traces it
    knows ({} without one)."""
    if not store.rollups or not trace_ids:
        return {}
    rows = store.rows(
        f"SELECT trace_id, min(min_timestamp), max(max_timestamp) FROM {store.table('trace_index')} "
        "PREWHERE trace_id IN {ids:Array(String)} GROUP BY trace_id",
        {"ids": trace_ids},
    )
    return {str(t): (_utc(lo), _utc(hi)) for t, lo, hi in rows}


def trace_spans(store: Store, trace_id: str) -> list[TraceSpan]:
    """Every span of one trace as a tree, depth first, children by start time. A span whose
    parent is not stored (an outer service's span) is shown as a root."""
    known = trace_ranges(store, [trace_id])
    bound = ""
    params: dict[str, Any] = {"trace_id": trace_id}
    if trace_id in known:  # read by trace id within its range, not the whole table
        lo, hi = known[trace_id]
        bound = " AND timestamp >= {lo:DateTime64(6, 'UTC')} AND timestamp <= {hi:DateTime64(6, 'UTC')}"
        params.update(lo=naive_utc(lo), hi=naive_utc(hi))
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
