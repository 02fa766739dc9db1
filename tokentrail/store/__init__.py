"""The ClickHouse store: connect (server, cluster or embedded), migrate once, ingest the spool, query.

An application process never opens the embedded store; it writes to the spool. Readers (CLI,
dashboard, budget sync) open it briefly under a file lock, ingest pending spool files first,
query, and close. A server is used as the URL says: `http(s)://user:pass@host:8123/db` uses
database `db` (default `tokentrail`), created when missing.

Modules: errors (failures by kind, one line naming the fix), migrations (numbered DDL from
sql/), schema (public columns, rollups), spool, lock.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..config import Settings
from . import spool
from .errors import StoreError, StoreProblem, classify, redact_url
from .ingest import Ingested, ingest_spool, insert_settings
from .lock import exclusive
from .migrations import DATABASE, migrate
from .schema import Schema

logger = logging.getLogger("tokentrail.store")

__all__ = [
    "DATABASE",
    "Schema",
    "Store",
    "StoreError",
    "StoreProblem",
    "classify",
    "connect",
    "connect_server",
    "ensure_schema",
    "forget_missing_schema",
    "forget_schemas",
    "Ingested",
    "ingest_spool",
    "insert_settings",
    "open_store",
    "problem",
    "spool",
]

# In-process re-entrancy: a reader already holding the embedded store reuses its client.
_local = threading.local()


def _without_database(url: str, host: str | None = None) -> str:
    """The URL without its database path (the client would use a database that may not exist
    yet), optionally on another host (a cluster node, same port and credentials)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if host is not None:
        creds, _, hostport = netloc.rpartition("@")
        port = f":{parts.port}" if parts.port else ""
        netloc = f"{creds}@{host}{port}" if creds else f"{host}{port}"
    return urlunsplit((parts.scheme, netloc, "", parts.query, ""))


def connect_server(
    url: str, *, connect_timeout: float = 2.0, send_receive_timeout: float = 30.0, host: str | None = None
) -> Any:
    import clickhouse_connect

    return clickhouse_connect.get_client(
        dsn=_without_database(url, host),
        # clickhouse-connect takes TLS from the port (8443, 443) or `secure`, not the scheme
        secure=urlsplit(url).scheme == "https",
        connect_timeout=connect_timeout,
        send_receive_timeout=send_receive_timeout,
        autogenerate_session_id=False,
    )


def _connect_embedded(path: Path) -> Any:
    try:
        import chdb  # noqa: F401
    except ImportError:
        from ..errors import ConfigError

        raise ConfigError(
            "clickhouse_url",
            "the embedded store needs the chdb package",
            "pip install 'tokentrail[embedded]' or set TOKENTRAIL_CLICKHOUSE_URL to a server",
        ) from None
    import clickhouse_connect

    path.mkdir(parents=True, exist_ok=True)
    return clickhouse_connect.get_client(dsn=f"chdb://{path}")


# -- the schema, once per process per store -----------------------------------------------------
_schemas: dict[tuple[Any, ...], tuple[Schema, float]] = {}
_schema_locks: dict[tuple[Any, ...], threading.Lock] = {}
_schemas_lock = threading.Lock()
RECHECK_SECONDS = 30.0  # an incomplete schema (another process still building) is looked at again


def _store_key(settings: Settings) -> tuple[Any, ...]:
    if settings.embedded:
        path = settings.embedded_path
        try:  # a directory removed and made again is another store
            ino = os.stat(path).st_ino
        except OSError:
            ino = None
        return ("chdb", str(path.resolve()), ino, settings.retention_days)
    parts = urlsplit(settings.clickhouse_url or "")
    return (parts.scheme, parts.hostname, parts.port, parts.username, settings.database, settings.cluster, settings.retention_days)


def ensure_schema(client: Any, settings: Settings, **kw: Any) -> Schema:
    """Migrate the store `client` is connected to, once per process (not on every open,
    budget refresh or exporter reconnect); the Schema found is remembered."""
    key = _store_key(settings)
    with _schemas_lock:
        lock = _schema_locks.setdefault(key, threading.Lock())
    with lock:
        hit = _schemas.get(key)
        if hit is not None and (hit[0].complete or time.monotonic() - hit[1] < RECHECK_SECONDS):
            return hit[0]
        url = settings.clickhouse_url or ""
        schema = migrate(
            client,
            settings.database,
            settings.cluster,
            connect=lambda host: connect_server(url, host=host),
            exclusive=settings.embedded,
            retention_days=settings.retention_days,
            rollups=not settings.embedded,
            **kw,
        )
        _schemas[key] = (schema, time.monotonic())
        return schema


def forget_schemas(settings: Settings | None = None) -> None:
    """Forget that this process migrated a store (all of them without `settings`): the next
    open migrates it again. For a store whose tables went away (dropped, or a directory made
    anew), and for tests (as if the process were new)."""
    with _schemas_lock:
        if settings is None:
            _schemas.clear()
        else:
            _schemas.pop(_store_key(settings), None)


def _gone(e: BaseException) -> bool:
    from .migrations import error_code

    return error_code(e) in (60, 81)  # UNKNOWN_TABLE, UNKNOWN_DATABASE


def forget_missing_schema(settings: Settings, e: BaseException) -> None:
    """After a failure: when the store's tables are gone, forget they were migrated."""
    if _gone(e):
        forget_schemas(settings)


def problem(exc: BaseException, settings: Settings) -> StoreProblem:
    """classify() with what the settings say about the store (its URL, user, database)."""
    url = settings.clickhouse_url
    user = None if settings.embedded else (urlsplit(url or "").username or "default")
    where = str(settings.embedded_path) if settings.embedded else redact_url(url)
    return classify(exc, where=where, user=user, database=settings.database)


@dataclass
class Store:
    """An open store: `client` is a clickhouse-connect client on the server or the embedded engine."""

    client: Any
    settings: Settings
    schema: Schema | None = None

    @property
    def database(self) -> str:
        return self.settings.database

    def table(self, name: str) -> str:
        """A table's qualified name (`tokentrail.spans`; the Distributed table on a cluster)."""
        return f"{self.settings.database}.{name}"

    @property
    def rollups(self) -> bool:
        """True when the rollups are complete (their migration recorded) and may be read."""
        return self.schema is not None and self.schema.rollups

    def query(self, sql: str, parameters: dict[str, Any] | None = None, **kw: Any) -> Any:
        return self.client.query(sql, parameters=parameters, **kw)

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return list(self.client.query(sql, parameters=parameters).result_rows)

    def df(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        return self.client.query_df(sql, parameters=parameters)

    def ingest(self) -> Ingested:
        return ingest_spool(self.client, self.settings.spool_dir, self.settings)


def connect(settings: Settings) -> tuple[Any, Schema]:
    """A client on the configured server with its schema up to date (migrated once per
    process), using the configured database. Errors are raised as they come (see problem())."""
    assert settings.clickhouse_url and not settings.embedded
    client = connect_server(settings.clickhouse_url)
    try:
        schema = ensure_schema(client, settings)
        client.database = settings.database
    except BaseException:  # close, then re-raise
        client.close()
        raise
    return client, schema


@contextmanager
def open_store(settings: Settings, *, ingest: bool = True, lock_timeout: float = 60.0) -> Iterator[Store]:
    """Open the configured store for reading: lock (embedded), migrate, ingest the spool, yield."""
    if settings.embedded:
        held: Store | None = getattr(_local, "store", None)
        if held is not None and held.settings.embedded_path == settings.embedded_path:
            if ingest:
                held.ingest()
            yield held
            return
        path = settings.embedded_path
        with exclusive(path.with_name(path.name + ".lock"), timeout=lock_timeout):
            client = _connect_embedded(path)
            try:
                store = Store(client, settings, ensure_schema(client, settings))
                if ingest:
                    store.ingest()
                _local.store = store
                try:
                    yield store
                except Exception as e:  # forget the schema cache, then re-raise
                    if _gone(e):
                        forget_schemas(settings)
                    raise
                finally:
                    _local.store = None
            finally:
                client.close()
    else:
        client, schema = connect(settings)
        try:
            store = Store(client, settings, schema)
            if ingest:
                store.ingest()
            yield store
        except Exception as e:  # forget the schema cache, then re-raise
            if _gone(e):  # dropped behind our back: migrate again on the next open
                forget_schemas(settings)
            raise
        finally:
            client.close()
