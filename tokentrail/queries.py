"""Every question tokentrail asks of the store, in one place: the CLI and the dashboard share it.

A function here takes an open `Store` (see `tokentrail.store.open_store`) and a `Filters`, and
returns typed results. Filters render to a WHERE clause with ClickHouse server-side parameters
(`{name:Type}`): user values never become SQL text. Money is `Decimal` (the column is
`Decimal(18, 9)`), never float; a sum over unpriced calls only is `None` (unknown), never $0.

Spend is counted on model-call spans (operation chat / text_completion / embeddings): chains,
retrievers and tools carry no cost of their own.

To add a question (a dashboard page, say): write a function `name(store, filters, ...) -> typed
result`, build its WHERE with `filters.where()` (and `.and_(...)` for more conditions), and use
`MODEL_CALLS` when it counts calls or spend.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from . import semconv as sc
from .errors import ConfigError, TokentrailError
from .store import DATABASE, Store

__all__ = [
    "GROUP_BY",
    "MODEL_OPERATIONS",
    "SPANS",
    "Filters",
    "ReportRow",
    "SqlError",
    "SqlResult",
    "Totals",
    "Where",
    "parse_time",
    "parse_window",
    "report",
    "run_sql",
    "totals",
]

SPANS = f"{DATABASE}.spans"
MODEL_OPERATIONS: tuple[str, ...] = (sc.OP_CHAT, sc.OP_TEXT_COMPLETION, sc.OP_EMBEDDINGS)

# report --by NAME -> SQL expression of the group key. A fixed whitelist: the key is SQL text.
GROUP_BY: dict[str, str] = {
    "model": "request_model",
    "response_model": "response_model",
    "provider": "provider",
    "user": "user_id",
    "team": "team",
    "feature": "feature",
    "project": "project",
    "environment": "environment",
    "session": "session_id",
    "operation": "operation",
    "status": "status",
    "day": "toString(toDate(timestamp))",
}

# Filters field -> column
_FILTER_COLUMNS: dict[str, str] = {
    "project": "project",
    "environment": "environment",
    "team": "team",
    "feature": "feature",
    "user_id": "user_id",
    "session_id": "session_id",
    "model": "request_model",
    "provider": "provider",
}

_WINDOW_RE = re.compile(r"^\s*(\d+)\s*(m|min|h|d|w)\s*$", re.IGNORECASE)
_WINDOW_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


# -- time -----------------------------------------------------------------------------------
def parse_window(value: str) -> timedelta:
    """`"30m"`, `"24h"`, `"7d"`, `"2w"` -> timedelta. ConfigError otherwise."""
    m = _WINDOW_RE.match(value)
    if not m:
        raise ConfigError("window", f"{value!r} is not a time window", "use a number and a unit: 30m, 24h, 7d, 2w")
    return timedelta(**{_WINDOW_UNITS[m.group(2).lower()]: int(m.group(1))})


def parse_time(value: datetime | date | str, *, now: datetime | None = None, field_name: str = "since") -> datetime:
    """A point in time (UTC) from a datetime, a date, a relative window back from now ("7d"), or an
    ISO date / datetime string ("2026-01-31", "2026-01-31T12:00"). Naive values are UTC."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if not isinstance(value, str):
        raise ConfigError(field_name, f"{value!r} is not a time", "use 7d, 24h, or a date like 2026-01-31")
    if _WINDOW_RE.match(value):
        return (now or datetime.now(timezone.utc)) - parse_window(value)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            field_name, f"{value!r} is not a time", "use a window like 7d / 24h / 30m or a date like 2026-01-31"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


# -- filters --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Where:
    """A rendered WHERE condition and its server-side parameters."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)

    def and_(self, condition: str, **params: Any) -> Where:
        """This condition AND another (whose `{name:Type}` parameters are given here)."""
        clash = set(params) & set(self.params)
        if clash:
            raise ValueError(f"parameter names already used: {sorted(clash)}")
        sql = condition if self.sql == "1" else f"{self.sql} AND {condition}"
        return Where(sql, {**self.params, **params})


FilterValue = str | Sequence[str] | None


@dataclass(frozen=True)
class Filters:
    """Which spans a question looks at. None means no filter on that field.

    since / until: a datetime, a date, an ISO string, or a window back from now ("7d", "24h").
    The other fields take one value or a sequence of values (any of them matches); the empty
    string matches spans where the field is unset. `model` matches the requested model.
    """

    since: datetime | date | str | None = None
    until: datetime | date | str | None = None
    project: FilterValue = None
    environment: FilterValue = None
    team: FilterValue = None
    feature: FilterValue = None
    user_id: FilterValue = None
    session_id: FilterValue = None
    model: FilterValue = None
    provider: FilterValue = None

    def time_range(self, now: datetime | None = None) -> tuple[datetime | None, datetime | None]:
        now = now or datetime.now(timezone.utc)
        since = parse_time(self.since, now=now, field_name="since") if self.since is not None else None
        until = parse_time(self.until, now=now, field_name="until") if self.until is not None else None
        if since and until and since >= until:
            raise ConfigError("since", f"{since:%Y-%m-%d %H:%M} is not before until {until:%Y-%m-%d %H:%M}", "swap them")
        return since, until

    def where(self, *, now: datetime | None = None, prefix: str = "f_") -> Where:
        """The WHERE condition ("1" when nothing is filtered) with parameters named `{prefix}field`."""
        conditions: list[str] = []
        params: dict[str, Any] = {}
        since, until = self.time_range(now)
        # naive UTC: the parameter is typed DateTime64(6, 'UTC'), so no zone conversion happens
        if since is not None:
            conditions.append(f"timestamp >= {{{prefix}since:DateTime64(6, 'UTC')}}")
            params[f"{prefix}since"] = since.astimezone(timezone.utc).replace(tzinfo=None)
        if until is not None:
            conditions.append(f"timestamp < {{{prefix}until:DateTime64(6, 'UTC')}}")
            params[f"{prefix}until"] = until.astimezone(timezone.utc).replace(tzinfo=None)
        for name, column in _FILTER_COLUMNS.items():
            value = getattr(self, name)
            if value is None:
                continue
            key = f"{prefix}{name}"
            if isinstance(value, str):
                conditions.append(f"{column} = {{{key}:String}}")
                params[key] = value
            else:
                values = [str(v) for v in value]
                conditions.append(f"{column} IN {{{key}:Array(String)}}")
                params[key] = values
        return Where(" AND ".join(conditions) if conditions else "1", params)

    def describe(self) -> str:
        """A short human description of the active filters, for titles."""
        parts: list[str] = []
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            shown = v if isinstance(v, (str, datetime, date)) else ",".join(map(str, v))
            parts.append(f"{f.name}={shown}")
        return " ".join(parts) if parts else "all time"


def model_calls(filters: Filters, *, now: datetime | None = None) -> Where:
    """Filters restricted to model-call spans (the ones that carry tokens and cost)."""
    return filters.where(now=now).and_("operation IN {mc_ops:Array(String)}", mc_ops=list(MODEL_OPERATIONS))


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


_METRICS = """
    count() AS calls,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_write_tokens) AS cache_write_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(cost_usd) AS cost_usd,
    countIf(cost_status = 'unpriced') AS unpriced_calls,
    countIf(status = 'error') AS errors
"""


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
    where = model_calls(filters or Filters(), now=now)
    order = "key" if by == "day" else "cost_usd DESC NULLS LAST, calls DESC, key"
    sql = f"SELECT {key} AS key, {_METRICS} FROM {SPANS} WHERE {where.sql} GROUP BY key ORDER BY {order}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [ReportRow(key=str(r[0]), **_totals_from(r[1:])) for r in store.rows(sql, where.params)]


def totals(store: Store, filters: Filters | None = None, *, now: datetime | None = None) -> Totals:
    """All model calls matching the filters, summed."""
    where = model_calls(filters or Filters(), now=now)
    rows = store.rows(f"SELECT {_METRICS} FROM {SPANS} WHERE {where.sql}", where.params)
    return Totals(**_totals_from(rows[0]))


# -- user SQL -------------------------------------------------------------------------------
class SqlError(TokentrailError):
    """A user's SQL failed. One line: the problem, and the fix."""

    def __init__(self, problem: str, fix: str, *, code: int | None = None) -> None:
        self.problem = problem
        self.fix = fix
        self.code = code
        super().__init__(f"tokentrail: sql: {problem}; {fix}")


@dataclass(frozen=True)
class SqlResult:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r, strict=True)) for r in self.rows]


_CODE_RE = re.compile(r"Code:\s*(\d+)\.")
_FORMAT_TAIL_RE = re.compile(r"\bFORMAT\s+\w+\s*;?\s*$", re.IGNORECASE)
_FIXES: Mapping[int, str] = {
    62: "check the SQL syntax",
    60: "list the tables with: SHOW TABLES FROM tokentrail",
    81: "the database is tokentrail (tables: tokentrail.spans, tokentrail.budget_events)",
    47: "list the columns with: DESCRIBE tokentrail.spans",
    46: "check the function name",
    43: "check the argument types (cost_usd is Nullable(Decimal(18, 9)))",
    53: "check the types being compared (timestamps compare with '2026-01-31 00:00:00')",
    215: "add the column to GROUP BY or aggregate it",
    159: "narrow the query (add a WHERE on timestamp, or a LIMIT)",
}


def _clean_message(text: str) -> str:
    first = " ".join(text.split())
    # clickhouse-connect and chdb each prefix "Code: N. DB::Exception:"; keep the innermost text
    parts = re.split(r"Code:\s*\d+\.\s*DB::Exception:\s*", first)
    msg = parts[-1].strip() if len(parts) > 1 else first
    msg = re.sub(r"\s*\(version [^)]*\)", "", msg)
    msg = re.sub(r"\s*Stack trace.*$", "", msg)
    # the client appends "FORMAT Native" to every query: not the user's text
    msg = msg.replace(" FORMAT Native", "")
    # the parser lists every token it could accept: the first few say enough
    m = re.search(r"Expected one of: ([^.]*)", msg)
    if m:
        options = [o.strip() for o in m.group(1).split(",")]
        short = ", ".join(options[:6]) + (" etc" if len(options) > 6 else "")
        msg = msg[: m.start()] + f"Expected one of: {short}" + msg[m.end() :]
    return msg[:300].rstrip(". ")


def sql_error(exc: BaseException) -> SqlError:
    """Turn a ClickHouse error into a one-line SqlError."""
    text = str(exc)
    codes = _CODE_RE.findall(text)
    code = int(codes[-1]) if codes else None
    if code == 164 or "readonly mode" in text:
        return SqlError(
            "the store is read-only here, the statement was refused and nothing was changed",
            "use SELECT, WITH, SHOW, DESCRIBE or EXPLAIN",
            code=164,
        )
    return SqlError(_clean_message(text), _FIXES.get(code or -1, "fix the query"), code=code)


@contextmanager
def _readonly_client(store: Store) -> Iterator[Any]:
    """A client whose whole session is `readonly=1`.

    Why not per-query `settings={"readonly": 1}` on the store's client: on chdb,
    clickhouse-connect applies per-call settings of commands and INSERTs with SET and restores
    them after, and the restore fails in readonly mode, so readonly=1 would stick to the shared
    client (measured with clickhouse-connect 1.12). A second handle on the same embedded engine
    costs ~30 ms, is read-only from its first statement, and is closed after the query.
    Over HTTP there is no session (settings ride on each request), so per-query is safe there.
    """
    if store.settings.embedded:
        import clickhouse_connect

        client = clickhouse_connect.get_client(dsn=f"chdb://{store.settings.embedded_path}", settings={"readonly": 1})
        try:
            yield client
        finally:
            client.close()
    else:
        yield _PerQueryReadonly(store.client)


class _PerQueryReadonly:
    def __init__(self, client: Any) -> None:
        self._client = client

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        return self._client.query(sql, parameters=parameters, settings={"readonly": 1})


def run_sql(store: Store, sql: str, *, readonly: bool = True, parameters: dict[str, Any] | None = None) -> SqlResult:
    """Run a user's SQL. With readonly (the default) ClickHouse itself refuses any write."""
    from clickhouse_connect.driver.exceptions import Error as ClickHouseError

    text = sql.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    if not text:
        raise SqlError("the query is empty", 'give one, e.g. tokentrail sql "SELECT count() FROM tokentrail.spans"')
    if _FORMAT_TAIL_RE.search(text):
        raise SqlError("a FORMAT clause is not supported here", "remove it and choose the output with --format table|csv|json")
    try:
        if readonly:
            with _readonly_client(store) as client:
                result = client.query(text, parameters=parameters)
        else:
            result = store.client.query(text, parameters=parameters)
    except ClickHouseError as e:
        raise sql_error(e) from None
    types = [getattr(t, "name", str(t)) for t in (result.column_types or ())]
    return SqlResult(list(result.column_names), types, [tuple(r) for r in result.result_rows])


# == dashboard ================================================================================
# The dashboard's questions (tokentrail/dashboard). Same rules as above: Filters render the
# WHERE, spend is counted on MODEL_OPERATIONS spans, money stays Decimal.

# Sidebar filter (a Filters field) -> column, for the lists of values to choose from.
FILTER_FIELDS: dict[str, str] = {
    "project": "project",
    "environment": "environment",
    "team": "team",
    "feature": "feature",
    "user_id": "user_id",
    "model": "request_model",
    "provider": "provider",
}

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

# Chat-like calls: the traffic a "what would another model cost" question re-prices
# (embeddings are not interchangeable with a chat model).
CHAT_OPERATIONS: tuple[str, ...] = (sc.OP_CHAT, sc.OP_TEXT_COMPLETION, "generate_content")


def span_count(store: Store) -> int:
    """Every span in the store, unfiltered (zero means: show how to get data in)."""
    return int(store.rows(f"SELECT count() FROM {SPANS}")[0][0])


def filter_values(store: Store, filters: Filters, *, limit: int = 500, now: datetime | None = None) -> dict[str, list[str]]:
    """The values each FILTER_FIELDS field takes in the filters' time range (other filters
    ignored, so every choice stays reachable). Users: the `limit` most active."""
    window = Filters(since=filters.since, until=filters.until).where(now=now)
    low = [f for f in FILTER_FIELDS if f != "user_id"]
    cols = ", ".join(f"arraySort(groupUniqArray({FILTER_FIELDS[f]}))" for f in low)
    row = store.rows(
        f"SELECT {cols}, topK({int(limit)})(user_id) FROM {SPANS} WHERE {window.sql}", window.params
    )[0]
    out = {f: [str(v) for v in values] for f, values in zip(low, row[: len(low)], strict=True)}
    out["user_id"] = sorted(str(v) for v in row[len(low)])
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
    where = model_calls(filters or Filters(), now=now)
    sql = (
        f"SELECT {BREAKDOWN_BY[by]} AS key, {_METRICS} FROM {SPANS} WHERE {where.sql} "
        "GROUP BY key ORDER BY cost_usd DESC NULLS LAST, calls DESC, key"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [ReportRow(key=str(r[0]), **_totals_from(r[1:])) for r in store.rows(sql, where.params)]


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


def spend_series(
    store: Store, filters: Filters | None = None, *, by: str = "model", bucket: str = "day", now: datetime | None = None
) -> list[SeriesPoint]:
    """Model calls' spend per time bucket and group (`by`: a BREAKDOWN_BY field), oldest first."""
    if bucket not in _BUCKETS:
        raise ConfigError("bucket", f"{bucket!r} is not a bucket", "use hour or day")
    if by not in BREAKDOWN_BY:
        raise ConfigError("by", f"{by!r} is not a breakdown", f"use one of {', '.join(BREAKDOWN_BY)}")
    where = model_calls(filters or Filters(), now=now)
    sql = (
        f"SELECT {_BUCKETS[bucket]} AS b, {BREAKDOWN_BY[by]} AS key, count(), sum(input_tokens), "
        f"sum(output_tokens), sum(cost_usd) FROM {SPANS} WHERE {where.sql} GROUP BY b, key ORDER BY b, key"
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
        for r in store.rows(sql, where.params)
    ]


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)


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

    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    start, end = _month_bounds(now)
    rate_since = max(start, now - timedelta(days=window_days))
    where = model_calls(replace(filters or Filters(), since=start, until=now), now=now)
    sql = (
        f"SELECT toDate(timestamp) AS d, sum(cost_usd), "
        f"sumIf(cost_usd, timestamp >= {{rate_since:DateTime64(6, 'UTC')}}) "
        f"FROM {SPANS} WHERE {where.sql} GROUP BY d ORDER BY d"
    )
    rows = store.rows(sql, {**where.params, "rate_since": rate_since.replace(tzinfo=None)})
    daily = [(_utc(r[0]), Decimal(r[1] or 0)) for r in rows]
    spent = sum((d for _, d in daily), Decimal(0))
    recent = sum((Decimal(r[2] or 0) for r in rows), Decimal(0))
    rate_days = Decimal((now - rate_since).total_seconds()) / Decimal(86400)
    rate = recent / rate_days if rate_days > 0 else Decimal(0)
    days_left = Decimal((end - now).total_seconds()) / Decimal(86400)
    return MonthForecast(start, end, now, spent, rate, spent + rate * days_left, daily)


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


# -- efficiency -----------------------------------------------------------------------------
@dataclass(frozen=True)
class EstimatedShare:
    """How much of the usage a tokenizer counted because the provider reported none."""

    calls: int
    estimated_calls: int
    tokens: int
    estimated_tokens: int
    cost_usd: Decimal | None
    estimated_cost_usd: Decimal | None


def estimated_share(store: Store, filters: Filters | None = None, *, now: datetime | None = None) -> EstimatedShare:
    where = model_calls(filters or Filters(), now=now)
    r = store.rows(
        "SELECT count(), countIf(usage_estimated), sum(input_tokens + output_tokens), "
        "sumIf(input_tokens + output_tokens, usage_estimated), sum(cost_usd), "
        f"if(countIf(usage_estimated AND cost_usd IS NOT NULL) = 0, NULL, sumIf(cost_usd, usage_estimated)) "
        f"FROM {SPANS} WHERE {where.sql}",
        where.params,
    )[0]
    return EstimatedShare(
        calls=int(r[0]),
        estimated_calls=int(r[1]),
        tokens=int(r[2]),
        estimated_tokens=int(r[3]),
        cost_usd=None if r[4] is None else Decimal(r[4]),
        estimated_cost_usd=None if r[5] is None else Decimal(r[5]),
    )


def error_costs(store: Store, filters: Filters | None = None, *, now: datetime | None = None) -> list[ReportRow]:
    """Model calls that failed, grouped by error type: what they cost anyway."""
    where = model_calls(filters or Filters(), now=now).and_("status = 'error'")
    rows = store.rows(
        f"SELECT error_type AS key, {_METRICS} FROM {SPANS} WHERE {where.sql} "
        "GROUP BY key ORDER BY cost_usd DESC NULLS LAST, calls DESC, key",
        where.params,
    )
    return [ReportRow(key=str(r[0]), **_totals_from(r[1:])) for r in rows]


# Re-pricing traffic at another price (cache savings, another model) without a Python loop per
# call. Within one price tier and one day a call's cost is linear in its token counts, so the
# spans are summed per (model, day, tier bucket) in SQL and each sum is priced with per-token
# rates that PriceBook itself gives for a call of that bucket. Tier buckets come from every tier
# threshold in genai-prices (a cliff on total input tokens); prices that change within a day
# (off-peak hours) are bucketed per 30 minutes instead of per day.
@dataclass(frozen=True)
class _Rates:
    """What PriceBook charges for `per` tokens of each kind (plus `fee` per call)."""

    per: int
    fee: Decimal
    uncached: Decimal
    cache_read: Decimal
    cache_write: Decimal
    output: Decimal
    reasoning: Decimal

    def cost(self, calls: int, uncached: int, cache_read: int, cache_write: int, output: int, reasoning: int) -> Decimal:
        tokens = (
            uncached * self.uncached
            + cache_read * self.cache_read
            + cache_write * self.cache_write
            + (output - reasoning) * self.output
            + reasoning * self.reasoning
        )
        return calls * self.fee + tokens / self.per


def _decimal_context() -> Any:
    from decimal import Context, localcontext

    return localcontext(Context(prec=50))


def tier_thresholds() -> tuple[int, ...]:
    """Every input-token threshold at which some genai-prices price changes (cliffs)."""
    return _tier_thresholds()


def _tier_thresholds() -> tuple[int, ...]:
    global _TIERS
    if _TIERS is None:
        from genai_prices.data import providers
        from genai_prices.types import TieredPrices

        starts: set[int] = set()
        for p in providers:
            for m in p.models:
                for cp in m.prices if isinstance(m.prices, list) else [m.prices]:
                    for value in vars(getattr(cp, "prices", cp)).values():
                        if isinstance(value, TieredPrices):
                            starts.update(t.start for t in value.tiers)
        _TIERS = tuple(sorted(starts))
    return _TIERS


_TIERS: tuple[int, ...] | None = None


def _bucket_sql() -> str:
    return f"arrayCount(t -> input_tokens > t, [{', '.join(str(t) for t in _tier_thresholds()) or '0'}])"


def _bucket_tokens(bucket: int) -> int:
    """A call size inside tier bucket `bucket` (inputs above the bucket's threshold)."""
    tiers = _tier_thresholds()
    if bucket == 0:
        return min(1000, tiers[0]) if tiers else 1000
    return tiers[bucket - 1] + 1


def _varies_within_day(prices: Any, model: str, provider: str | None) -> bool:
    """True when genai-prices prices this model by time of day (off-peak hours)."""
    if prices.overrides and (model in prices.overrides or model.lower() in {k.lower() for k in prices.overrides}):
        return False
    try:
        from genai_prices import Usage as GPUsage
        from genai_prices import calc_price
        from genai_prices.types import TimeOfDateConstraint

        from .providers import genai_prices_provider_id

        pid = genai_prices_provider_id(provider) if provider else None
        info = calc_price(GPUsage(), model_ref=model, provider_id=pid).model
    except Exception:
        return False
    schedule = info.prices if isinstance(info.prices, list) else []
    return any(isinstance(getattr(c, "constraint", None), TimeOfDateConstraint) for c in schedule)


class _RateBook:
    """Memoised _Rates per (model, provider, time slot, tier bucket)."""

    def __init__(self, prices: Any) -> None:
        self.prices = prices
        self._memo: dict[tuple[str, str, datetime, int], _Rates | None] = {}
        self._tod: dict[tuple[str, str], bool] = {}

    def rates_at(self, model: str, provider: str, slot: datetime, bucket: int) -> _Rates | None:
        """Rates at a 30-minute slot: the slot's day's, unless the price varies within a day."""
        key = (model, provider)
        tod = self._tod.get(key)
        if tod is None:
            tod = self._tod[key] = _varies_within_day(self.prices, model, provider)
        when = slot if tod else slot.replace(hour=0, minute=0, second=0, microsecond=0)
        return self.rates(model, provider, when, bucket)

    def rates(self, model: str, provider: str, when: datetime, bucket: int) -> _Rates | None:
        key = (model, provider, when, bucket)
        if key not in self._memo:
            self._memo[key] = self._compute(model, provider, when, bucket)
        return self._memo[key]

    def _compute(self, model: str, provider: str, when: datetime, bucket: int) -> _Rates | None:
        from .usage import Usage

        n = _bucket_tokens(bucket)

        def total(**counts: int) -> Decimal | None:
            c = self.prices.cost(Usage(**counts), model, provider or None, when)
            return None if c.total_usd is None or c.status not in (sc.COST_PRICED, sc.COST_OVERRIDE) else c.total_usd

        fee = total()
        base = total(input_tokens=n)
        cache_read = total(input_tokens=n, cache_read_tokens=n)
        cache_write = total(input_tokens=n, cache_write_tokens=n)
        output = total(input_tokens=n, output_tokens=n)
        reasoning = total(input_tokens=n, output_tokens=n, reasoning_tokens=n)
        if None in (fee, base, cache_read, cache_write, output, reasoning):
            return None
        assert fee is not None and base is not None and cache_read is not None
        assert cache_write is not None and output is not None and reasoning is not None
        return _Rates(
            per=n,
            fee=fee,
            uncached=base - fee,
            cache_read=cache_read - fee,
            cache_write=cache_write - fee,
            output=output - base,
            reasoning=reasoning - base,
        )


_SLOT_SQL = "toStartOfInterval(timestamp, INTERVAL 30 MINUTE)"
_DAY_SQL = "toDateTime(toDate(timestamp), 'UTC')"
_TOKEN_SUMS = (
    "sum(greatest(toInt64(input_tokens) - toInt64(cache_read_tokens) - toInt64(cache_write_tokens), 0)), "
    "sum(cache_read_tokens), sum(cache_write_tokens), "
    "sum(greatest(toInt64(output_tokens), toInt64(reasoning_tokens))), sum(reasoning_tokens)"
)


_PRICE_BOOKS: dict[tuple[Any, ...], Any] = {}


def price_book(overrides: Mapping[str, Any] | None = None) -> Any:
    """A PriceBook shared by the questions with the same overrides: its per-day price plans
    stay warm across dashboard refreshes (a cold day costs a few ms per model)."""
    from .pricing import PriceBook

    key = tuple(sorted((overrides or {}).items()))
    book = _PRICE_BOOKS.get(key)
    if book is None:
        if len(_PRICE_BOOKS) > 16:
            _PRICE_BOOKS.clear()
        book = _PRICE_BOOKS[key] = PriceBook(dict(overrides or {}))
    return book


@dataclass(frozen=True)
class CacheSavingsRow:
    model: str
    provider: str
    calls: int
    cache_read_tokens: int
    saved_usd: Decimal


@dataclass(frozen=True)
class CacheSavings:
    """What prompt caching saved: cache-read tokens re-priced at the uncached input price,
    minus what was paid for them. Calls without a price are left out (their tokens counted in
    unpriced_cache_read_tokens)."""

    cache_read_tokens: int
    saved_usd: Decimal
    by_model: list[CacheSavingsRow]
    unpriced_cache_read_tokens: int


# the model a call was priced with: the response model, else the requested one
_PRICED_MODEL = "if(response_model != '', response_model, request_model)"


def cache_savings(
    store: Store, filters: Filters | None = None, *, prices: Any = None, now: datetime | None = None
) -> CacheSavings:
    prices = prices if prices is not None else price_book(store.settings.prices)
    where = model_calls(filters or Filters(), now=now).and_("cache_read_tokens > 0")
    # one scan, in 30-minute slots; a model whose price does not change within a day is then
    # priced per day (PriceBook's own granularity), an off-peak-priced one per slot
    rows = store.rows(
        f"SELECT {_PRICED_MODEL} AS m, request_model, provider, {_SLOT_SQL} AS t, {_bucket_sql()} AS b, "
        f"count(), sum(cache_read_tokens), (cost_usd IS NOT NULL) AS priced "
        f"FROM {SPANS} WHERE {where.sql} GROUP BY m, request_model, provider, t, b, priced",
        where.params,
    )
    book = _RateBook(prices)
    saved: dict[tuple[str, str], list[Any]] = {}
    unpriced = 0
    with _decimal_context():
        for m, req, provider, t, b, calls, cache_read, priced in rows:
            if not priced:
                unpriced += int(cache_read)
                continue
            slot, bucket = _utc(t), int(b)
            rates = book.rates_at(str(m), str(provider), slot, bucket) or book.rates_at(str(req), str(provider), slot, bucket)
            if rates is None:
                unpriced += int(cache_read)
                continue
            acc = saved.setdefault((str(req), str(provider)), [0, 0, Decimal(0)])
            acc[0] += int(calls)
            acc[1] += int(cache_read)
            acc[2] += int(cache_read) * (rates.uncached - rates.cache_read) / rates.per
    by_model = sorted(
        (CacheSavingsRow(m, p, c, n, s) for (m, p), (c, n, s) in saved.items()),
        key=lambda r: (-r.saved_usd, r.model, r.provider),
    )
    return CacheSavings(
        cache_read_tokens=sum(r.cache_read_tokens for r in by_model),
        saved_usd=sum((r.saved_usd for r in by_model), Decimal(0)),
        by_model=by_model,
        unpriced_cache_read_tokens=unpriced,
    )


@dataclass(frozen=True)
class WhatIfRow:
    model: str
    provider: str
    calls: int
    actual_usd: Decimal
    what_if_usd: Decimal | None


@dataclass(frozen=True)
class WhatIf:
    """The same chat traffic (calls with a known cost) re-priced on `model`. what_if_usd is
    None when that model has no price; skipped_calls had no cost to compare with."""

    model: str
    provider: str | None
    calls: int
    actual_usd: Decimal
    what_if_usd: Decimal | None
    by_model: list[WhatIfRow]
    skipped_calls: int

    @property
    def difference_usd(self) -> Decimal | None:
        return None if self.what_if_usd is None else self.what_if_usd - self.actual_usd


def what_if(
    store: Store,
    filters: Filters | None,
    model: str,
    provider: str | None = None,
    *,
    prices: Any = None,
    now: datetime | None = None,
) -> WhatIf:
    """What the filtered chat calls would have cost on `model` (at each call's day's price,
    tokens as they were: a different model would tokenize differently; this is the estimate
    every cost calculator makes)."""
    prices = prices if prices is not None else price_book(store.settings.prices)
    where = (filters or Filters()).where(now=now).and_("operation IN {wi_ops:Array(String)}", wi_ops=list(CHAT_OPERATIONS))
    tod = _varies_within_day(prices, model, provider)
    slot = _SLOT_SQL if tod else _DAY_SQL
    rows = store.rows(
        f"SELECT request_model, provider, {slot} AS t, {_bucket_sql()} AS b, (cost_usd IS NOT NULL) AS known, "
        f"count(), sum(cost_usd), {_TOKEN_SUMS} FROM {SPANS} WHERE {where.sql} "
        "GROUP BY request_model, provider, t, b, known",
        where.params,
    )
    book = _RateBook(prices)
    groups: dict[tuple[str, str], list[Any]] = {}
    unknown = False
    skipped = 0
    with _decimal_context():
        for req, prov, t, b, known, calls, actual, uncached, cache_read, cache_write, output, reasoning in rows:
            if not known:  # no actual cost to compare with
                skipped += int(calls)
                continue
            acc = groups.setdefault((str(req), str(prov)), [0, Decimal(0), Decimal(0)])
            acc[0] += int(calls)
            acc[1] += Decimal(actual or 0)
            rates = book.rates(model, provider or "", _utc(t), int(b))
            if rates is None:
                unknown = True
                continue
            acc[2] += rates.cost(int(calls), int(uncached), int(cache_read), int(cache_write), int(output), int(reasoning))
    by_model = sorted(
        (WhatIfRow(m, p, c, a, None if unknown else w) for (m, p), (c, a, w) in groups.items()),
        key=lambda r: (-r.actual_usd, r.model, r.provider),
    )
    return WhatIf(
        model=model,
        provider=provider,
        calls=sum(r.calls for r in by_model),
        actual_usd=sum((r.actual_usd for r in by_model), Decimal(0)),
        what_if_usd=None if unknown else sum((r.what_if_usd or Decimal(0) for r in by_model), Decimal(0)),
        by_model=by_model,
        skipped_calls=skipped,
    )


# genai-prices providers offered first as "what would it cost on..." targets
WHAT_IF_PROVIDERS: tuple[str, ...] = ("openai", "anthropic", "google", "mistral", "deepseek", "x-ai", "groq", "aws")


def what_if_models(prices: Any = None) -> list[tuple[str, str | None]]:
    """(model, provider) choices: price overrides first, then the chat models genai-prices
    knows for the main providers (provider = its genai-prices id)."""
    from genai_prices.data import providers

    out: list[tuple[str, str | None]] = [(m, None) for m in sorted(getattr(prices, "overrides", {}) or {})]
    by_id = {p.id: p for p in providers}
    for pid in WHAT_IF_PROVIDERS:
        p = by_id.get(pid)
        if p is None:
            continue
        for m in sorted(p.models, key=lambda m: m.id):
            if "embed" in m.id or "tts" in m.id or "whisper" in m.id or "image" in m.id:
                continue
            out.append((m.id, pid))
    return out
