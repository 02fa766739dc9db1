"""Spend, tokens and calls: the report, totals, breakdowns, series and the month-end forecast."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from .. import clock
from ..errors import ConfigError
from ..store import Store
from .filters import FILTER_FIELDS, GROUP_BY, MODEL_OPERATIONS, Filters, Where, _utc
from .source import COST, METRIC_DIMS, METRICS, USERS, facts


# -- spend report ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Totals:
    """Model calls and what they used and cost.

    cost_usd is the sum of the calls' costs; None (unknown, not $0) when some calls are unpriced
    and none has a cost. Unpriced calls are not in the sum: `unpriced_calls` says how many."""

    calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_usd: Decimal | None
    unpriced_calls: int
    errors: int

    @property
    def cost_per_call_usd(self) -> Decimal | None:
        priced = self.calls - self.unpriced_calls
        if self.cost_usd is None or priced <= 0:
            return None
        return self.cost_usd / priced


@dataclass(frozen=True)
class ReportRow(Totals):
    """One group of a report: `key` is the value of the grouping field ('' = unset)."""

    key: str = ""


_METRICS = METRICS  # over facts (see source.py): the same sums from spans or a rollup

# the columns each grouping reads (for the choice of a rollup); "day" reads the time only
_KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "model": ("request_model",),
    "response_model": ("response_model",),
    "provider": ("provider",),
    "user": ("user_id",),
    "team": ("team",),
    "feature": ("feature",),
    "project": ("project",),
    "environment": ("environment",),
    "session": ("session_id",),
    "operation": ("operation",),
    "status": ("status",),
    "day": (),
    "tag": ("tags",),
    "error_type": ("error_type",),
    "cost_status": ("cost_status",),
    "framework": ("framework",),
    "service": ("service_name",),
}


def model_call_facts(
    store: Store,
    filters: Filters | None,
    *,
    now: datetime | None,
    need: tuple[str, ...] = (),
    extra: Where | None = None,
    **kw: Any,
) -> tuple[str, dict[str, Any]]:
    """`FROM ...` over the model calls matching the filters (and `extra`): see source.facts."""
    cond = Where("operation IN {mc_ops:Array(String)}", {"mc_ops": list(MODEL_OPERATIONS)})
    if extra is not None:
        cond = cond.and_(extra.sql, **extra.params)
    src = facts(store, filters, now=now, need=(*need, *METRIC_DIMS, "operation"), conditions=cond, **kw)
    return src.sql, src.params


def _totals_from(row: Sequence[Any]) -> dict[str, Any]:
    calls, inp, out, cr, cw, rs, cost, unpriced, errors = row
    return dict(
        calls=int(calls),
        input_tokens=int(inp or 0),
        output_tokens=int(out or 0),
        cache_read_tokens=int(cr or 0),
        cache_write_tokens=int(cw or 0),
        reasoning_tokens=int(rs or 0),
        # unknown (None) only when calls went unpriced and none had a cost; no calls cost $0
        cost_usd=Decimal(cost) if cost is not None else (None if unpriced else Decimal(0)),
        unpriced_calls=int(unpriced),
        errors=int(errors),
    )


def check_group(by: str) -> str:
    if by not in GROUP_BY:
        raise ConfigError("by", f"{by!r} is not a report grouping", f"use one of {', '.join(GROUP_BY)}")
    return GROUP_BY[by]


def report(
    store: Store, by: str = "model", filters: Filters | None = None, *, limit: int | None = None, now: datetime | None = None
) -> list[ReportRow]:
    """Model calls grouped by `by` (see GROUP_BY): most expensive first (by day: oldest first)."""
    key = check_group(by)
    src, params = model_call_facts(store, filters, now=now, need=_KEY_COLUMNS[by])
    order = "key" if by == "day" else "cost_usd DESC NULLS LAST, calls DESC, key"
    sql = f"SELECT {key} AS key, {_METRICS} FROM {src} GROUP BY key ORDER BY {order}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [ReportRow(key=str(r[0]), **_totals_from(r[1:])) for r in store.rows(sql, params)]


def totals(store: Store, filters: Filters | None = None, *, now: datetime | None = None) -> Totals:
    """All model calls matching the filters, summed."""
    src, params = model_call_facts(store, filters, now=now)
    rows = store.rows(f"SELECT {_METRICS} FROM {src}", params)
    return Totals(**_totals_from(rows[0]))



# Breakdown page: everything `report` groups by, and the rest of what a span is attributed to.
BREAKDOWN_BY: dict[str, str] = {
    **GROUP_BY,
    # a call with two tags counts under both; a call without tags under ''
    "tag": "arrayJoin(if(empty(tags), [''], tags))",
    "error_type": "error_type",
    "cost_status": "cost_status",
    "framework": "framework",
    "service": "service_name",
}


def span_count(store: Store) -> int:
    """Every span in the store, unfiltered (zero means: show how to get data in)."""
    return int(store.rows(f"SELECT count() FROM {store.table('spans')}")[0][0])


def filter_values(store: Store, filters: Filters, *, limit: int = 500, now: datetime | None = None) -> dict[str, list[str]]:
    """The values each FILTER_FIELDS field takes in the filters' time range widened to whole
    days (UTC; other filters ignored, so every choice stays reachable). Users: the `limit` most
    active. Whole days: read from the daily rollups alone, no raw spans at the window's edges
    (at 10M spans those were half of the Overview's time; at 100M an edge day is 1M spans)."""
    since, until = filters.time_range(now)
    day = 86400

    def whole(t: datetime | None, up: bool) -> datetime | None:
        if t is None:
            return None
        ts = int(t.timestamp())
        ts = ts - ts % day + (day if up and ts % day else 0)
        return datetime.fromtimestamp(ts, tz=timezone.utc)

    window = Filters(since=whole(since, False), until=whole(until, True))
    low = [f for f in FILTER_FIELDS if f != "user_id"]
    src = facts(store, window, now=now, need=[FILTER_FIELDS[f] for f in low])
    cols = ", ".join(f"arraySort(groupUniqArray({FILTER_FIELDS[f]}))" for f in low)
    row = store.rows(f"SELECT {cols} FROM {src.sql}", src.params)[0]
    out = {f: [str(v) for v in values] for f, values in zip(low, row[: len(low)], strict=True)}
    # users: the `limit` with the most spans (ties by id), exact on a rollup as on the spans
    users = facts(store, window, now=now, need=["user_id"], among=(USERS,))
    top = store.rows(
        f"SELECT user_id, sum(spans) AS n FROM {users.sql} GROUP BY user_id ORDER BY n DESC, user_id LIMIT {int(limit)}",
        users.params,
    )
    out["user_id"] = sorted(str(r[0]) for r in top)
    # spans other than model calls have no model or provider: '' is not a choice there
    out["model"] = [v for v in out["model"] if v]
    out["provider"] = [v for v in out["provider"] if v]
    return out


def breakdown(
    store: Store, by: str, filters: Filters | None = None, *, limit: int | None = None, now: datetime | None = None
) -> list[ReportRow]:
    """Model calls grouped by any BREAKDOWN_BY field, most expensive first."""
    if by in GROUP_BY:
        return report(store, by, filters, limit=limit, now=now)
    if by not in BREAKDOWN_BY:
        raise ConfigError("by", f"{by!r} is not a breakdown", f"use one of {', '.join(BREAKDOWN_BY)}")
    src, params = model_call_facts(store, filters, now=now, need=_KEY_COLUMNS[by])
    sql = (
        f"SELECT {BREAKDOWN_BY[by]} AS key, {_METRICS} FROM {src} "
        "GROUP BY key ORDER BY cost_usd DESC NULLS LAST, calls DESC, key"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [ReportRow(key=str(r[0]), **_totals_from(r[1:])) for r in store.rows(sql, params)]


@dataclass(frozen=True)
class SeriesPoint:
    """Spend of one group in one time bucket (bucket = start of the hour or day, UTC)."""

    bucket: datetime
    key: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal | None


_BUCKETS = {"hour": "toStartOfHour(timestamp)", "day": "toDateTime(toDate(timestamp), 'UTC')"}
_GRAIN = {"hour": 3600, "day": 86400}


def spend_series(
    store: Store, filters: Filters | None = None, *, by: str = "model", bucket: str = "day", now: datetime | None = None
) -> list[SeriesPoint]:
    """Model calls' spend per time bucket and group (`by`: a BREAKDOWN_BY field), oldest first."""
    if bucket not in _BUCKETS:
        raise ConfigError("bucket", f"{bucket!r} is not a bucket", "use hour or day")
    if by not in BREAKDOWN_BY:
        raise ConfigError("by", f"{by!r} is not a breakdown", f"use one of {', '.join(BREAKDOWN_BY)}")
    src, params = model_call_facts(store, filters, now=now, need=_KEY_COLUMNS[by], grain=_GRAIN[bucket])
    sql = (
        f"SELECT {_BUCKETS[bucket]} AS b, {BREAKDOWN_BY[by]} AS key, sum(spans), sum(input_tokens), "
        f"sum(output_tokens), {COST} FROM {src} GROUP BY b, key ORDER BY b, key"
    )
    return [
        SeriesPoint(
            bucket=_utc(r[0]),
            key=str(r[1]),
            calls=int(r[2]),
            input_tokens=int(r[3]),
            output_tokens=int(r[4]),
            cost_usd=None if r[5] is None else Decimal(r[5]),
        )
        for r in store.rows(sql, params)
    ]


@dataclass(frozen=True)
class Overview:
    """The Overview page's figures from one scan: the totals, spend per time bucket and model,
    and the `top` models (each equal to totals(), spend_series(by="model") and report("model"))."""

    totals: Totals
    series: list[SeriesPoint]
    top_models: list[ReportRow]


def overview(
    store: Store, filters: Filters | None = None, *, bucket: str = "day", top: int = 10, now: datetime | None = None
) -> Overview:
    """totals, spend_series(by="model", bucket) and report("model", limit=top) from one query
    grouped by bucket and model (sums add up exactly: the rest is summed here)."""
    if bucket not in _BUCKETS:
        raise ConfigError("bucket", f"{bucket!r} is not a bucket", "use hour or day")
    src, params = model_call_facts(store, filters, now=now, need=_KEY_COLUMNS["model"], grain=_GRAIN[bucket])
    sql = (
        f"SELECT {_BUCKETS[bucket]} AS b, {GROUP_BY['model']} AS key, sum(spans), sum(input_tokens), sum(output_tokens), "
        "sum(cache_read_tokens), sum(cache_write_tokens), sum(reasoning_tokens), sumIf(spans, has_cost), sum(cost_usd), "
        f"sumIf(spans, cost_status = 'unpriced'), sumIf(spans, status = 'error') FROM {src} GROUP BY b, key ORDER BY b, key"
    )
    rows = store.rows(sql, params)
    n = 10  # the sums after (bucket, key)
    per_model: dict[str, list[Any]] = {}
    everything: list[Any] = [0] * n
    series = []
    for r in rows:
        sums: list[Any] = [Decimal(v) if i == 7 else int(v or 0) for i, v in enumerate(r[2:])]
        cost = Decimal(sums[7]) if sums[6] else None  # no call with a cost: unknown, not $0
        series.append(SeriesPoint(bucket=_utc(r[0]), key=str(r[1]), calls=int(sums[0]), input_tokens=int(sums[1]), output_tokens=int(sums[2]), cost_usd=cost))
        acc = per_model.setdefault(str(r[1]), [0] * n)
        for i in range(n):
            acc[i] += sums[i]
            everything[i] += sums[i]

    def as_totals(s: list[Any]) -> dict[str, Any]:
        return _totals_from((s[0], s[1], s[2], s[3], s[4], s[5], s[7] if s[6] else None, s[8], s[9]))

    # report's order: cost DESC NULLS LAST (NULL: no call with a cost), calls DESC, key (bytes)
    order = sorted(per_model.items(), key=lambda kv: (not kv[1][6], -kv[1][7] if kv[1][6] else 0, -kv[1][0], kv[0].encode()))
    models = [ReportRow(key=k, **as_totals(v)) for k, v in order[:top]]
    return Overview(Totals(**as_totals(everything)), series, models)


# -- month-end forecast -----------------------------------------------------------------------
@dataclass(frozen=True)
class MonthForecast:
    """This calendar month (UTC) so far, and where it ends at the recent daily rate.

    forecast_usd = spent_usd + daily_rate_usd * days_left, where the daily rate is the spend of
    the last `window_days` days (or of the month so far, when younger) divided by their length.
    """

    month_start: datetime
    month_end: datetime
    now: datetime
    spent_usd: Decimal
    daily_rate_usd: Decimal
    forecast_usd: Decimal
    daily: list[tuple[datetime, Decimal]]  # spend per day of the month so far

    @property
    def days_left(self) -> Decimal:
        return Decimal((self.month_end - self.now).total_seconds()) / Decimal(86400)


def _month_bounds(now: datetime) -> tuple[datetime, datetime]:
    start = datetime(now.year, now.month, 1, tzinfo=timezone.utc)
    end = datetime(now.year + (now.month == 12), now.month % 12 + 1, 1, tzinfo=timezone.utc)
    return start, end


def month_forecast(
    store: Store, filters: Filters | None = None, *, now: datetime | None = None, window_days: int = 7
) -> MonthForecast:
    """Month-to-date spend of the filtered calls (their time range is replaced by this month)
    and the month-end forecast at the last `window_days` days' rate."""
    from dataclasses import replace

    now = (now or clock.now()).astimezone(timezone.utc)
    start, end = _month_bounds(now)
    rate_since = max(start, now - timedelta(days=window_days))
    src, params = model_call_facts(
        store, replace(filters or Filters(), since=start, until=now), now=now, cuts=(rate_since,), grain=86400
    )
    sql = (
        f"SELECT toDate(timestamp) AS d, sum(cost_usd), "
        f"sumIf(cost_usd, timestamp >= {{rate_since:DateTime64(6, 'UTC')}}) "
        f"FROM {src} GROUP BY d ORDER BY d"
    )
    rows = store.rows(sql, {**params, "rate_since": rate_since.replace(tzinfo=None)})
    daily = [(_utc(r[0]), Decimal(r[1] or 0)) for r in rows]
    spent = sum((d for _, d in daily), Decimal(0))
    recent = sum((Decimal(r[2] or 0) for r in rows), Decimal(0))
    rate_days = Decimal((now - rate_since).total_seconds()) / Decimal(86400)
    rate = recent / rate_days if rate_days > 0 else Decimal(0)
    days_left = Decimal((end - now).total_seconds()) / Decimal(86400)
    return MonthForecast(start, end, now, spent, rate, spent + rate * days_left, daily)
