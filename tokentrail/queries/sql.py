"""User SQL: read-only execution, bounded in time, memory and result rows; one-line errors.

The limits (Settings.sql_max_seconds, sql_max_memory_bytes, sql_max_rows) are fixed when the
read-only session is created: under readonly=1 the query itself cannot change them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..config import Settings, format_size
from ..errors import TokentrailError
from ..store import Store


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


def _limit_error(code: int, settings: Settings | None) -> SqlError | None:
    """The one-line error of a query stopped by one of the user-SQL limits."""
    s = settings or Settings()
    narrow = "narrow the query (a WHERE on timestamp, fewer columns, a LIMIT)"
    if code == 159:
        return SqlError(
            f"stopped at the {s.sql_max_seconds:g} s time limit (max_execution_time)",
            f"{narrow} or raise the limit with TOKENTRAIL_SQL_MAX_SECONDS (sql_max_seconds in tokentrail.toml)",
            code=code,
        )
    if code == 241:
        return SqlError(
            f"stopped at the {format_size(s.sql_max_memory_bytes)} memory limit (max_memory_usage)",
            f"{narrow} or raise the limit with TOKENTRAIL_SQL_MAX_MEMORY (sql_max_memory_bytes in tokentrail.toml)",
            code=code,
        )
    if code == 396:
        return SqlError(
            f"the result has more than the {s.sql_max_rows:,} rows allowed (max_result_rows)",
            "aggregate or add a LIMIT, or raise the limit with TOKENTRAIL_SQL_MAX_ROWS (sql_max_rows in tokentrail.toml)",
            code=code,
        )
    return None


def sql_error(exc: BaseException, settings: Settings | None = None) -> SqlError:
    """Turn a ClickHouse error into a one-line SqlError (`settings`: the limits in force)."""
    text = str(exc)
    codes = _CODE_RE.findall(text)
    code = int(codes[-1]) if codes else None
    limited = _limit_error(code, settings) if code is not None else None
    if limited is not None:
        return limited
    if code == 164 or "readonly mode" in text:
        return SqlError(
            "the store is read-only here, the statement was refused and nothing was changed",
            "use SELECT, WITH, SHOW, DESCRIBE or EXPLAIN",
            code=164,
        )
    return SqlError(_clean_message(text), _FIXES.get(code or -1, "fix the query"), code=code)


def session_limits(settings: Settings) -> dict[str, Any]:
    """The settings of a user-SQL session. readonly comes last: chdb applies them in order (as
    SET statements), and once readonly=1 is set nothing more can be."""
    return {
        "max_execution_time": settings.sql_max_seconds,
        "max_memory_usage": settings.sql_max_memory_bytes,
        "max_result_rows": settings.sql_max_rows,
        "result_overflow_mode": "throw",
        "readonly": 1,
    }


@contextmanager
def _readonly_client(store: Store) -> Iterator[Any]:
    """A client whose whole session is `readonly=1`, with the user-SQL limits.

    Why not per-query `settings={"readonly": 1}` on the store's client: on chdb,
    clickhouse-connect applies per-call settings of commands and INSERTs with SET and restores
    them after, and the restore fails in readonly mode, so readonly=1 would stick to the shared
    client (measured with clickhouse-connect 1.12). A second handle on the same embedded engine
    costs ~30 ms, is read-only from its first statement, and is closed after the query.
    Over HTTP there is no session (settings ride on each request, readonly=1 with the limits in
    the same request), so per-query is safe there.
    """
    limits = session_limits(store.settings)
    if store.settings.embedded:
        import clickhouse_connect

        client = clickhouse_connect.get_client(dsn=f"chdb://{store.settings.embedded_path}", settings=limits)
        try:
            yield client
        finally:
            client.close()
    else:
        yield _PerQueryReadonly(store.client, limits)


class _PerQueryReadonly:
    def __init__(self, client: Any, settings: dict[str, Any]) -> None:
        self._client = client
        self._settings = settings

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        return self._client.query(sql, parameters=parameters, settings=self._settings)


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
        raise sql_error(e, store.settings) from None
    types = [getattr(t, "name", str(t)) for t in (result.column_types or ())]
    return SqlResult(list(result.column_names), types, [tuple(r) for r in result.result_rows])
