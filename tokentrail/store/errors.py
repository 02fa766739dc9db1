"""What went wrong talking to the store, by kind, in one line that names the fix.

    problem = classify(exc, where="http://host:8123/llm_costs", user="alice", database="llm_costs")
    problem.kind       # "unreachable" | "timeout" | "busy" | "authentication" | "permission"
                       # | "missing" | "schema" | "other"
    problem.transient  # True for unreachable / timeout / busy: retry later, nothing to fix
    problem.message    # "<problem>; <fix>", one line, no "tokentrail:" prefix

The exporter spools a batch whatever the kind; a transient one is retried quietly, any other
needs the user and is worth one clear line (once, not on every retry). `StoreError` is raised by
tokentrail itself (a migration it may not run, a table that is not its own) and carries its
StoreProblem, so `classify` returns it unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import TokentrailError

__all__ = [
    "AUTHENTICATION",
    "BUSY",
    "KINDS",
    "MISSING",
    "OTHER",
    "PERMISSION",
    "SCHEMA",
    "TIMEOUT",
    "TRANSIENT",
    "UNREACHABLE",
    "StoreError",
    "StoreProblem",
    "classify",
    "redact_url",
]

UNREACHABLE = "unreachable"
TIMEOUT = "timeout"
BUSY = "busy"  # the embedded store is held by another process; a server refusing inserts for now
AUTHENTICATION = "authentication"
PERMISSION = "permission"
MISSING = "missing"  # database or table absent, and the user may not create it
SCHEMA = "schema"
OTHER = "other"
KINDS = (UNREACHABLE, TIMEOUT, BUSY, AUTHENTICATION, PERMISSION, MISSING, SCHEMA, OTHER)
TRANSIENT = frozenset({UNREACHABLE, TIMEOUT, BUSY})


@dataclass(frozen=True)
class StoreProblem:
    kind: str
    message: str
    code: int | None = None

    @property
    def transient(self) -> bool:
        return self.kind in TRANSIENT

    def __str__(self) -> str:
        return self.message


class StoreError(TokentrailError):
    """A store problem tokentrail detected itself; `problem` says which kind and the fix."""

    def __init__(self, problem: StoreProblem) -> None:
        self.problem = problem
        super().__init__(f"tokentrail: {problem.message}")


def redact_url(url: str | None) -> str:
    """A server URL without its credentials (and without a query string)."""
    if not url:
        return "the embedded store"
    if url.startswith("chdb://"):
        return url
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


_CODE_RE = re.compile(r"Code:\s*(\d+)\.")
_GRANT_RE = re.compile(r"have the grant (?P<grant>.+?) ON (?P<on>\S+?)\.?\s*\((?:ACCESS_DENIED|NOT_ENOUGH_PRIVILEGES)\)")
_UNKNOWN_DB_RE = re.compile(r"Database (\S+) does(?:n't| not) exist")
_UNKNOWN_TABLE_RE = re.compile(r"Table (\S+) does(?:n't| not) exist|Unknown table expression identifier '([^']+)'")

# (needle in the lower-cased text, what to call it) for transport failures
_UNREACHABLE = (
    ("connection refused", "connection refused"),
    ("name or service not known", "unknown host"),
    ("nodename nor servname", "unknown host"),
    ("temporary failure in name resolution", "unknown host"),
    ("no route to host", "no route to host"),
    ("network is unreachable", "network unreachable"),
    ("connection reset", "connection reset"),
    ("connection aborted", "connection aborted"),
    ("remotedisconnected", "connection closed by the server"),
    ("max retries exceeded", "unreachable"),
)
_TIMEOUT = ("timed out", "timeout")
_AUTH_CODES = {192, 193, 194, 516}  # UNKNOWN_USER, WRONG_PASSWORD, REQUIRED_PASSWORD, AUTHENTICATION_FAILED
_PERMISSION_CODES = {164, 497}  # READONLY, ACCESS_DENIED
_SCHEMA_CODES = {16, 47, 53, 70, 386}  # NO_SUCH_COLUMN_IN_TABLE, UNKNOWN_IDENTIFIER, TYPE_MISMATCH, CANNOT_CONVERT_TYPE, NO_COMMON_TYPE
_TIMEOUT_CODES = {159, 209}  # TIMEOUT_EXCEEDED, SOCKET_TIMEOUT
_NETWORK_CODES = {210, 279}  # NETWORK_ERROR (a shard down), ALL_CONNECTION_TRIES_FAILED


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    parts = re.split(r"Code:\s*\d+\.\s*DB::(?:Net)?Exception:\s*", line)
    line = parts[-1] if len(parts) > 1 else line
    line = re.sub(r"\s*\(version [^)]*\)", "", line)
    line = re.sub(r"\s*\(for url [^)]*\)", "", line)
    line = re.sub(r"\s*Stack trace.*$", "", line)
    return line[:limit].rstrip(" .")


def classify(
    exc: BaseException, *, where: str | None = None, user: str | None = None, database: str | None = None
) -> StoreProblem:
    """The kind of a store failure and one line naming the fix.

    where: the store as the user knows it (a redacted URL); user: the ClickHouse user;
    database: the database tokentrail uses there (for the fixes it suggests)."""
    if isinstance(exc, StoreError):
        return exc.problem
    at = where or "the ClickHouse server"
    who = f"user {user!r}" if user else "the user"
    grantee = user or "<user>"
    db = database or "tokentrail"
    text = str(exc)
    low = " ".join(text.split()).lower()
    codes = _CODE_RE.findall(text)
    code = int(codes[-1]) if codes else None

    if isinstance(exc, TimeoutError) and "store lock" in low:  # store.lock.LockTimeout
        return StoreProblem(BUSY, f"{_one_line(text).removeprefix('tokentrail: ')}", code)
    if "error initializing embeddedserver" in low:
        return StoreProblem(
            BUSY, f"the embedded store at {at} is open in another process; close it (or wait) and try again", code
        )
    if code == 252:  # TOO_MANY_PARTS: merges behind, or inserts held back while rollups are built
        return StoreProblem(
            BUSY, f"ClickHouse at {at} refuses inserts for now (too many parts, or a migration holds them back); tokentrail retries", code
        )
    if code in _AUTH_CODES:
        return StoreProblem(
            AUTHENTICATION,
            f"ClickHouse at {at} refused {who}: wrong password or no such user; "
            "fix the user and password in TOKENTRAIL_CLICKHOUSE_URL (http://user:password@host:8123/db)",
            code,
        )
    if code == 164 or "readonly mode" in low:
        return StoreProblem(
            PERMISSION,
            f"{who} is read-only on ClickHouse at {at}, so tokentrail cannot write there; "
            "use a user without readonly for the application (a read-only one suits the dashboard)",
            code,
        )
    if code == 497:
        m = _GRANT_RE.search(" ".join(text.split()))
        grant, on = (m.group("grant"), m.group("on")) if m else ("the right", f"{db}.*")
        grant = re.sub(r"\s*\([^)]*\)", "", grant)  # INSERT(timestamp, ...): the right, not its columns
        if grant.startswith("CREATE DATABASE"):
            name = on.split(".")[0]
            return StoreProblem(
                MISSING,
                f"database {name} does not exist on {at} and {who} may not create it (needs CREATE DATABASE); "
                f"create it once as an admin (CREATE DATABASE {name}) or GRANT CREATE DATABASE ON {name}.* TO {grantee}",
                code,
            )
        if grant.startswith(("CREATE TABLE", "CREATE VIEW", "CREATE DICTIONARY")):
            return StoreProblem(
                MISSING,
                f"the tables of {on.split('.')[0]} do not exist on {at} and {who} may not create them (needs {grant}); "
                f"run tokentrail once with a user that may (it creates them), or GRANT {grant} ON {on} TO {grantee}",
                code,
            )
        return StoreProblem(
            PERMISSION,
            f"{who} may not use {on} on ClickHouse at {at} (needs {grant}); GRANT {grant} ON {on} TO {grantee}",
            code,
        )
    if code == 81:
        m = _UNKNOWN_DB_RE.search(text)
        name = m.group(1).strip("`'\".") if m else db
        return StoreProblem(
            MISSING,
            f"database {name} does not exist on {at}; let tokentrail create it (a user that may CREATE DATABASE) "
            f"or create it once as an admin: CREATE DATABASE {name}",
            code,
        )
    if code == 60:
        m = _UNKNOWN_TABLE_RE.search(text)
        name = next((g for g in (m.groups() if m else ()) if g), f"{db}.spans").strip("`'\".")
        return StoreProblem(
            MISSING,
            f"table {name} does not exist on {at}; run tokentrail once with a user that may create tables "
            f"(it migrates the database), or GRANT CREATE TABLE ON {db}.* TO {grantee}",
            code,
        )
    if code in _SCHEMA_CODES:
        return StoreProblem(
            SCHEMA,
            f"the tables in {db} on {at} do not match what this tokentrail writes ({_one_line(text, 160)}); "
            "upgrade tokentrail, or point TOKENTRAIL_CLICKHOUSE_URL at a database of its own",
            code,
        )
    if code in _TIMEOUT_CODES or isinstance(exc, TimeoutError) or any(n in low for n in _TIMEOUT):
        detail = f" ({_one_line(text, 120)})" if isinstance(exc, TimeoutError) and text else ""
        return StoreProblem(
            TIMEOUT,
            f"ClickHouse at {at} did not answer in time{detail}; check the server's load and the network (tokentrail retries)",
            code,
        )
    for needle, what in _UNREACHABLE:
        if needle in low:
            return StoreProblem(
                UNREACHABLE,
                f"cannot reach ClickHouse at {at} ({what}); check TOKENTRAIL_CLICKHOUSE_URL and that the server is up",
                code,
            )
    if code in _NETWORK_CODES:
        return StoreProblem(
            UNREACHABLE,
            f"ClickHouse at {at} cannot reach a shard ({_one_line(text, 120)}); check that every node of the cluster is up",
            code,
        )
    if isinstance(exc, (ConnectionError, OSError)) and not codes:
        return StoreProblem(
            UNREACHABLE, f"cannot reach ClickHouse at {at} ({_one_line(text, 120)}); check the URL and that the server is up"
        )
    return StoreProblem(OTHER, f"ClickHouse at {at}: {_one_line(text)}; check the server's log for the cause", code)
