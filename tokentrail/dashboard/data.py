"""Data access for the dashboard: settings, one store opening per refresh, short-TTL caching.

The embedded store may be open in one process at a time, so a page never holds it: each cached
loader opens it (under its lock), asks its questions from `tokentrail.queries`, and closes it.
Results are cached for TTL_SECONDS, keyed on the store and the question's arguments (the
filters); the Refresh button clears the cache.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from .. import queries
from ..config import Settings, resolve
from ..errors import TokentrailError
from ..store import open_store

TTL_SECONDS = 30
T = TypeVar("T")


class StoreUnavailable(TokentrailError):
    """The store could not be read (server down, lock held, bad settings): shown, not raised."""


def settings() -> Settings:
    """Settings as the CLI resolves them: env vars, then tokentrail.toml, then defaults."""
    return resolve()


def store_key(s: Settings) -> str:
    """What identifies a store in cache keys (never a password: the URL's credentials are cut)."""
    return s.public_store


def with_store(s: Settings, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Open the store, run fn(store, ...), close it (the lock is released at once)."""
    try:
        with open_store(s) as store:
            return fn(store, *args, **kwargs)
    except queries.SqlError:
        raise
    except TokentrailError as e:
        raise StoreUnavailable(str(e)) from None
    except (OSError, TimeoutError) as e:
        raise StoreUnavailable(f"tokentrail: cannot read the store ({e})") from None
    except Exception as e:  # clickhouse-connect's errors: a page says why, re-raised otherwise
        # clickhouse-connect raises its own errors for an unreachable or failing server
        from clickhouse_connect.driver.exceptions import Error as ClickHouseError

        if isinstance(e, ClickHouseError):
            from ..store import problem

            raise StoreUnavailable(f"tokentrail: cannot read the store: {problem(e, s).message}") from None
        raise


def _budget_status(store: Any, now: Any = None) -> Any:
    from ..budgets.status import status

    return status(store, store.settings, now)


def _budget_burndown(store: Any, budget: str, scope_value: str = "", now: Any = None) -> Any:
    from ..budgets.status import burndown

    return burndown(store, store.settings, budget, scope_value, now)


def _budget_events(store: Any, **kwargs: Any) -> Any:
    from ..budgets.status import recent_events

    return recent_events(store, **kwargs)


# questions answered outside tokentrail.queries: the budgets package's own (the CLI's too)
_OTHER: dict[str, Callable[..., Any]] = {
    "budget_status": _budget_status,
    "budget_burndown": _budget_burndown,
    "budget_events": _budget_events,
}


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False, max_entries=512)
def _cached(key: str, name: str, args: tuple[Any, ...], kwargs: tuple[tuple[str, Any], ...], _settings: Settings) -> Any:
    fn = _OTHER.get(name) or getattr(queries, name)
    return with_store(_settings, fn, *args, **dict(kwargs))


def load(name: str, *args: Any, **kwargs: Any) -> Any:
    """`tokentrail.queries.<name>(store, *args, **kwargs)` (or a budgets question named in
    _OTHER), cached for TTL_SECONDS."""
    s = settings()
    return _cached(store_key(s), name, args, tuple(sorted(kwargs.items())), s)


def refresh() -> None:
    """Forget cached answers: the next load asks the store again."""
    _cached.clear()
