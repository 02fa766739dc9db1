"""Spool -> store: every pending file inserted once; a file the store refuses is set aside.

Exactly once: a file's batch id is its insert deduplication token, and the file is removed only
after its insert returned. A file the store refuses for what it holds (a torn line, a foreign
format, a value a column cannot take) is moved to `spool/rejected/` with the error beside it, and
the other files are ingested: one bad file never again makes every reader fail. A failure that
is not the file's (the server unreachable or busy, a timeout) stops the ingest and raises: the
file stays for the next reader.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import one_line
from . import spool

logger = logging.getLogger("tokentrail.store")

__all__ = ["Ingested", "ingest_spool", "insert_settings", "refuses_data"]

# ClickHouse error codes that say nothing about the data sent: the store is unreachable, busy,
# out of memory or space, read-only, or denies us. A file failing with one of these stays.
_NOT_THE_FILE = frozenset(
    {
        60,  # UNKNOWN_TABLE (migrations not applied there yet)
        81,  # UNKNOWN_DATABASE
        159, 160,  # TIMEOUT_EXCEEDED, TOO_SLOW
        164,  # READONLY
        202, 203,  # TOO_MANY_SIMULTANEOUS_QUERIES, NO_FREE_CONNECTION
        209, 210,  # SOCKET_TIMEOUT, NETWORK_ERROR
        225, 999,  # NO_ZOOKEEPER, KEEPER_EXCEPTION
        236, 394,  # ABORTED, QUERY_WAS_CANCELLED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        243,  # NOT_ENOUGH_SPACE
        252,  # TOO_MANY_PARTS
        285,  # TOO_FEW_LIVE_REPLICAS
        319,  # UNKNOWN_STATUS_OF_INSERT
        425,  # SYSTEM_ERROR
        439,  # CANNOT_SCHEDULE_TASK
        497, 516,  # ACCESS_DENIED, AUTHENTICATION_FAILED
    }
)  # fmt: skip
_CODE_RE = re.compile(r"Code:\s*(\d+)")

Insert = Callable[[str, bytes, str], None]


@dataclass
class Ingested:
    """What one ingest did: files inserted, and files set aside (path, the store's error)."""

    batches: int = 0
    set_aside: list[tuple[Path, str]] = field(default_factory=list)


def refuses_data(exc: BaseException) -> bool:
    """True when the store answered that it refuses this data (so the file is at fault), False
    when the failure is the store's, the network's or ours (retry later)."""
    from clickhouse_connect.driver.exceptions import (
        DatabaseError,
        InternalError,
        OperationalError,
        ProgrammingError,
    )

    if isinstance(exc, (OperationalError, ProgrammingError, InternalError)) or not isinstance(exc, DatabaseError):
        return False  # the transport failed, or the client was misused
    text = str(exc)
    codes = _CODE_RE.findall(text)
    if not codes:
        # no server code: refused only when the client could not even read the bytes as text
        return "can't decode" in text or "codec" in text
    return int(codes[-1]) not in _NOT_THE_FILE


def insert_settings(settings: Settings, batch_id: str) -> dict[str, Any]:
    """Settings of an insert of one batch: its id is the deduplication token (a batch re-sent
    is stored once, in the spans and in every rollup); on a cluster, the insert returns only
    when every shard has its rows (so a failure is seen, spooled and retried)."""
    out: dict[str, Any] = {
        "insert_deduplication_token": batch_id,
        "deduplicate_blocks_in_dependent_materialized_views": 1,
        # the rollups' views on their own threads: an insert waits for the slowest, not the sum
        "parallel_view_processing": 1,
        # the views group each block already, and readers sum(): merging the block's rows once
        # more on insert is wasted (measured: server CPU per span 5.9 -> 3.7 µs at 32,768)
        "optimize_on_insert": 0,
    }
    if settings.cluster:
        out["distributed_foreground_insert"] = 1
    return out


def raw_insert(client: Any, settings: Settings) -> Insert:
    def insert(table: str, data: bytes, batch_id: str) -> None:
        # no column list: rows may omit columns left at their default
        client.raw_insert(
            f"`{settings.database}`.{table}",
            None,
            insert_block=data,
            fmt="JSONEachRow",
            settings=insert_settings(settings, batch_id),
        )

    return insert


def ingest_spool(
    client: Any,
    spool_dir: Path,
    settings: Settings | None = None,
    *,
    insert: Insert | None = None,
    limit: int | None = None,
) -> Ingested:
    """Insert every pending spool file once (dedup token = batch id), at most `limit` files.
    `insert(table, data, batch_id)` defaults to a raw JSONEachRow insert on `client` (the
    exporter passes one bounded by its insert deadline). Raises on a failure that is not the
    file's; sets aside a file the store refuses."""
    put = insert or raw_insert(client, settings or Settings())
    done = Ingested()
    for f in spool.pending(spool_dir):
        if limit is not None and done.batches + len(done.set_aside) >= limit:
            break
        if f.table not in spool.TABLES:
            why = f"not a tokentrail spool file (expected <time>.<table>.<batch id>.jsonl, table one of {', '.join(spool.TABLES)})"
            done.set_aside.append((_set_aside(f, why), why))
            continue
        try:
            data = f.read()
        except FileNotFoundError:  # another reader ingested it meanwhile
            continue
        if data:
            try:
                put(f.table, data, f.batch_id)
            except Exception as e:  # only a refused batch is set aside; others re-raise
                if not refuses_data(e):
                    raise
                why = one_line(e, 2000)
                done.set_aside.append((_set_aside(f, why), why))
                continue
        f.remove()
        done.batches += 1
    return done


def _set_aside(f: spool.SpoolFile, why: str) -> Path:
    try:
        target = spool.set_aside(f, why)
    except FileNotFoundError:  # another reader took it meanwhile
        return f.path
    logger.warning(
        "tokentrail: the store refused spool file %s; set aside as %s (%s). Fix or delete it, then "
        "`tokentrail ingest --retry-rejected`",
        f.path.name,
        target,
        why[:300],
    )
    return target
