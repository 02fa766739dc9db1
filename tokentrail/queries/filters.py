"""Time windows and Filters: how every question is narrowed (rendered as a parameterised WHERE)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta, timezone
from typing import Any

from .. import clock
from .. import semconv as sc
from ..errors import ConfigError

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
        return (now or clock.now()) - parse_window(value)
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
        now = now or clock.now()
        since = parse_time(self.since, now=now, field_name="since") if self.since is not None else None
        until = parse_time(self.until, now=now, field_name="until") if self.until is not None else None
        if since and until and since >= until:
            raise ConfigError("since", f"{since:%Y-%m-%d %H:%M} is not before until {until:%Y-%m-%d %H:%M}", "swap them")
        return since, until

    def where(self, *, now: datetime | None = None, prefix: str = "f_", time: bool = True) -> Where:
        """The WHERE condition ("1" when nothing is filtered) with parameters named `{prefix}field`;
        time=False leaves the time range out (a source that splits time renders it)."""
        conditions: list[str] = []
        params: dict[str, Any] = {}
        since, until = self.time_range(now) if time else (None, None)
        # naive UTC: the parameter is typed DateTime64(6, 'UTC'), so no zone conversion happens
        if since is not None:
            conditions.append(f"timestamp >= {{{prefix}since:DateTime64(6, 'UTC')}}")
            params[f"{prefix}since"] = naive_utc(since)
        if until is not None:
            conditions.append(f"timestamp < {{{prefix}until:DateTime64(6, 'UTC')}}")
            params[f"{prefix}until"] = naive_utc(until)
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


def naive_utc(t: datetime) -> datetime:
    """A time as a {x:DateTime64(6, 'UTC')} parameter takes it: naive UTC, so no zone conversion happens."""
    return t.astimezone(timezone.utc).replace(tzinfo=None)


def _utc(value: Any) -> datetime:
    """A ClickHouse DateTime (naive UTC) or Date as an aware UTC datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
