"""The ClickHouse store: open (server or embedded), migrate, ingest the spool, query.

An application process never opens the embedded store; it writes to the spool. Readers (CLI,
dashboard, budget sync) open it briefly under a file lock, ingest pending spool files first,
query, and close.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Settings
from . import spool
from .ingest import Ingested, ingest_spool
from .lock import exclusive
from .migrations import DATABASE, migrate

logger = logging.getLogger("tokentrail.store")

__all__ = ["DATABASE", "Ingested", "Store", "connect_server", "ingest_spool", "open_store", "spool"]

# In-process re-entrancy: a reader already holding the embedded store reuses its client.
_local = threading.local()


def connect_server(url: str, *, connect_timeout: float = 2.0, send_receive_timeout: float = 30.0) -> Any:
    import clickhouse_connect

    return clickhouse_connect.get_client(
        dsn=url,
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


@dataclass
class Store:
    """An open store: `client` is a clickhouse-connect client on the server or the embedded engine."""

    client: Any
    settings: Settings

    def query(self, sql: str, parameters: dict[str, Any] | None = None, **kw: Any) -> Any:
        return self.client.query(sql, parameters=parameters, **kw)

    def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return list(self.client.query(sql, parameters=parameters).result_rows)

    def df(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        return self.client.query_df(sql, parameters=parameters)

    def ingest(self) -> Ingested:
        return ingest_spool(self.client, self.settings.spool_dir)


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
                migrate(client)
                store = Store(client, settings)
                if ingest:
                    store.ingest()
                _local.store = store
                try:
                    yield store
                finally:
                    _local.store = None
            finally:
                client.close()
    else:
        assert settings.clickhouse_url
        client = connect_server(settings.clickhouse_url)
        try:
            migrate(client)
            store = Store(client, settings)
            if ingest:
                store.ingest()
            yield store
        finally:
            client.close()
