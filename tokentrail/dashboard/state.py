"""The sidebar's filters, shared by every page and kept in the URL's query parameters.

URL keys: range (24h | 7d | 30d | 90d | month | all | custom), from / to (YYYY-MM-DD, for
custom), and project, environment, team, feature, user, model, provider (repeatable: any of the
values matches). A link with these parameters opens the same view.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import cast

import streamlit as st

from .. import clock
from ..queries import Filters

RANGES: dict[str, str] = {
    "24h": "Last 24 hours",
    "7d": "Last 7 days",
    "30d": "Last 30 days",
    "90d": "Last 90 days",
    "month": "This month",
    "all": "All time",
    "custom": "Custom dates",
}
DEFAULT_RANGE = "30d"
_DELTAS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30), "90d": timedelta(days=90)}

# URL key -> (Filters field, label)
DIMENSIONS: dict[str, tuple[str, str]] = {
    "project": ("project", "Project"),
    "environment": ("environment", "Environment"),
    "team": ("team", "Team"),
    "feature": ("feature", "Feature"),
    "user": ("user_id", "User"),
    "model": ("model", "Model"),
    "provider": ("provider", "Provider"),
}
URL_KEYS: tuple[str, ...] = ("range", "from", "to", *DIMENSIONS)
UNSET_LABEL = "(not set)"


@dataclass(frozen=True)
class View:
    """The filters of this run: `filters` for the queries, plus how the range was chosen."""

    filters: Filters
    range_key: str
    since: datetime | None
    until: datetime | None

    @property
    def span(self) -> timedelta | None:
        if self.since is None:
            return None
        return (self.until or now()) - self.since

    def bucket(self) -> str:
        """Chart time buckets: hours for two days or less, else days."""
        span = self.span
        return "hour" if span is not None and span <= timedelta(days=2) else "day"

    def describe(self) -> str:
        if self.range_key == "custom" and self.since and self.until:
            return f"{self.since:%Y-%m-%d} to {(self.until - timedelta(days=1)):%Y-%m-%d} (UTC)"
        return RANGES.get(self.range_key, self.range_key)


def now() -> datetime:
    """Now to the minute: relative ranges stay equal across reruns, so the cache can serve them."""
    return clock.now().replace(second=0, microsecond=0)


def time_range(range_key: str, start: date | None, end: date | None) -> tuple[datetime | None, datetime | None]:
    t = now()
    if range_key in _DELTAS:
        return t - _DELTAS[range_key], None
    if range_key == "month":
        return datetime(t.year, t.month, 1, tzinfo=timezone.utc), None
    if range_key == "custom" and start is not None:
        last = end or start
        return (
            datetime(start.year, start.month, start.day, tzinfo=timezone.utc),
            datetime(last.year, last.month, last.day, tzinfo=timezone.utc) + timedelta(days=1),
        )
    return None, None


def _url_list(key: str) -> list[str]:
    return list(st.query_params.get_all(key))


def _url_date(key: str) -> date | None:
    value = st.query_params.get(key)
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _init_from_url() -> None:
    """Seed the widgets from the URL once per session (a shared link opens its view)."""
    if st.session_state.get("tt_seeded"):
        return
    st.session_state["tt_seeded"] = True
    rng = st.query_params.get("range", DEFAULT_RANGE)
    st.session_state["tt_range"] = rng if rng in RANGES else DEFAULT_RANGE
    start, end = _url_date("from"), _url_date("to")
    if start is not None:
        st.session_state["tt_range"] = "custom"
        st.session_state["tt_dates"] = (start, end or start)
    for key in DIMENSIONS:
        st.session_state[f"tt_f_{key}"] = _url_list(key)


def sidebar() -> View:
    """Render the filter widgets in the sidebar and return this run's view. The choices are the
    values each field takes in the chosen time range (queries.filter_values)."""
    _init_from_url()
    sb = st.sidebar
    # one of RANGES (with python_version 3.10, mypy matches streamlit's empty-options overload)
    range_key = cast(str, sb.selectbox("Time range", list(RANGES), format_func=RANGES.__getitem__, key="tt_range"))
    start = end = None
    if range_key == "custom":
        t = now().date()
        st.session_state.setdefault("tt_dates", (t - timedelta(days=6), t))
        picked = sb.date_input("Dates (UTC)", key="tt_dates")
        if isinstance(picked, (tuple, list)):
            start = picked[0] if len(picked) > 0 else None
            end = picked[1] if len(picked) > 1 else None
        elif isinstance(picked, date):
            start = end = picked
    since, until = time_range(range_key, start, end)
    options = filter_options(since, until)
    chosen: dict[str, tuple[str, ...] | None] = {}
    for key, (field, label) in DIMENSIONS.items():
        values = list(options.get(field, []))
        wkey = f"tt_f_{key}"
        # a linked value that has no spans in this range stays selectable (and selected)
        for v in st.session_state.get(wkey, []):
            if v not in values:
                values.append(v)
        picked_values = sb.multiselect(
            label, values, key=wkey, format_func=lambda v: v or UNSET_LABEL, placeholder="All"
        )
        chosen[field] = tuple(picked_values) if picked_values else None
    filters = Filters(since=since, until=until, **chosen)
    _write_url(range_key, start, end)
    return View(filters=filters, range_key=range_key, since=since, until=until)


def _write_url(range_key: str, start: date | None, end: date | None) -> None:
    """Mirror the widgets into the URL (only what differs from the defaults)."""
    wanted: dict[str, str | list[str]] = {}
    if range_key != DEFAULT_RANGE:
        wanted["range"] = range_key
    if range_key == "custom" and start is not None:
        wanted["from"] = start.isoformat()
        wanted["to"] = (end or start).isoformat()
    for key in DIMENSIONS:
        values = st.session_state.get(f"tt_f_{key}") or []
        if values:
            wanted[key] = list(values)
    for key in URL_KEYS:
        if key in wanted:
            current = st.query_params.get_all(key)
            value = wanted[key]
            if current != (value if isinstance(value, list) else [value]):
                st.query_params[key] = value
        elif key in st.query_params:
            del st.query_params[key]


def page_param(key: str, default: str | None = None) -> str | None:
    """A page's own URL parameter (e.g. the Breakdown's `by`, the Traces page's `trace`)."""
    return st.query_params.get(key, default)


def set_page_param(key: str, value: str | None) -> None:
    if value is None or value == "":
        if key in st.query_params:
            del st.query_params[key]
    elif st.query_params.get(key) != value:
        st.query_params[key] = value


def filter_options(view_since: datetime | None, view_until: datetime | None) -> dict[str, list[str]]:
    from .data import load

    result: dict[str, list[str]] = load("filter_values", Filters(since=view_since, until=view_until))
    return result


__all__ = ["DIMENSIONS", "RANGES", "View", "filter_options", "page_param", "set_page_param", "sidebar"]
