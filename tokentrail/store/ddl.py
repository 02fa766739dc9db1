"""What a migration is made of: tables, alters, views (each a SQL file in `sql/`), and how one
is recorded. `migrations.py` lists them; `node.py` runs them on one node."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

DATABASE = "tokentrail"  # the default; Settings.database is the one in use
SQL_DIR = Path(__file__).with_name("sql")
SNAPSHOT = "_tokentrail_backfill"
BACKFILL_QUERY_ID = "tokentrail-backfill-"
_EXISTS = {57, 82}  # TABLE_ALREADY_EXISTS, DATABASE_ALREADY_EXISTS


@dataclass(frozen=True)
class Table:
    """A data table: a MergeTree on one server; `<name>_local` plus a Distributed `<name>` on a
    cluster. shard_key: how the Distributed table spreads inserts, deterministic so that a
    retried batch lands on the same shards and each shard deduplicates it; None for a table
    only read through the Distributed one (a rollup, filled on each shard by its view)."""

    name: str
    file: str
    shard_key: str | None = None
    rollup: bool = False  # filled by a view: a server's only (see migrate_node)
    names: tuple[tuple[str, str], ...] = ()  # more $names of its SQL file


@dataclass(frozen=True)
class Alter:
    table: str
    file: str
    distributed: bool = False  # adds columns: the Distributed table of a cluster gets them too


@dataclass(frozen=True)
class View:
    """A materialized view `<target>_mv` filling table `target` from spans; `file`: its SELECT."""

    target: str
    file: str
    names: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Migration:
    number: int
    name: str
    steps: tuple[Table | Alter, ...]
    views: tuple[View, ...] = ()


def sql_file(name: str, **names: str) -> str:
    return Template((SQL_DIR / name).read_text()).substitute(**names)


def error_code(e: BaseException) -> int | None:
    codes = re.findall(r"Code:\s*(\d+)\.", str(e))
    return int(codes[-1]) if codes else None


def applied(client: Any, database: str = DATABASE) -> set[int]:
    rows = client.query(f"SELECT number FROM `{database}`.migrations").result_rows
    return {int(r[0]) for r in rows}

# table -> the day a row belongs to, for the retention TTL: the same day on every table, so a
# rollup loses a day when the spans do
RETENTION: dict[str, str] = {
    "spans": "toDate(timestamp)",
    "trace_index": "toDate(max_timestamp)",
    "spend_hourly": "toDate(hour)",
    "spend_daily": "day",
    "traces_hourly": "toDate(hour)",
    "users_daily": "day",
}
