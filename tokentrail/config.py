"""One configuration registry: argument, then environment variable, then tokentrail.toml, then default.

Every value is checked here; a bad one raises ConfigError, one line naming the field and the fix.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_FILE_NAME = "tokentrail.toml"
_URL_SCHEMES = ("http://", "https://", "chdb://")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:/@+-]{1,128}$")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
# ClickHouse identifiers tokentrail writes into DDL unquoted-safe (database, cluster)
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
DEFAULT_DATABASE = "tokentrail"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class Settings:
    """The resolved configuration of one tokentrail instance.

    Attributes:
        clickhouse_url: `http(s)://user:pass@host:8123/db` for a ClickHouse server, `chdb:///path`
            for an embedded store at a path, or None for the embedded store in `home`.
        home: where the embedded store, the spool and the lock live (default ~/.tokentrail).
        project: the default project every span is attributed to.
        environment: the default environment (production, staging, ...), may be empty.
        budgets: Budget objects (see tokentrail.budgets).
        prices: price overrides by model name (see tokentrail.pricing).
        capture_content: record prompts and completions on spans (off by default: privacy).
        service_name: the OpenTelemetry service.name of the spans.
        webhook_url: where budget alerts are POSTed, if anywhere.
        insert_deadline_s: the longest one insert into a server may take (connect, migrate,
            insert) before its batch goes to the spool and the server is retried later.
        spool_max_bytes: the spool's size cap; past it new batches are counted as lost.
        queue_max_spans: finished spans held in memory for the exporter; past it the thread
            ending a span writes the oldest batch to the spool itself (nothing is dropped).
        sql_max_seconds, sql_max_memory_bytes, sql_max_rows: limits on user SQL (`tokentrail
            sql`, the dashboard's SQL page): execution time, memory, result rows.
        retention_days: keep spans (and their rollups) this many days (a ClickHouse TTL);
            None leaves the tables as they are, 0 removes a TTL set before.
        cluster: the ClickHouse cluster (`remote_servers`) whose shards hold the tables; inserts
            and reads go through Distributed tables. None: a single server.
        budget_backend: the ledger every process reserves budget against: "file" (default,
            TOKENTRAIL_HOME/budgets.ledger: every process on this machine), "redis://host:6379/0"
            (every host naming that Redis) or "memory" (this process only).
        budget_reservation_seconds: how long a call's reservation holds money if its process
            dies before settling it.
        config_file: the tokentrail.toml that was read, if any.
    """

    clickhouse_url: str | None = None
    home: Path = field(default_factory=lambda: Path("~/.tokentrail").expanduser())
    project: str = "default"
    environment: str = ""
    budgets: tuple[Any, ...] = ()
    prices: Mapping[str, Any] = field(default_factory=dict)
    capture_content: bool = False
    service_name: str = "tokentrail-app"
    webhook_url: str | None = None
    insert_deadline_s: float = 5.0
    spool_max_bytes: int = 1 << 30
    queue_max_spans: int = 32768
    sql_max_seconds: float = 30.0
    sql_max_memory_bytes: int = 4 << 30
    sql_max_rows: int = 1_000_000
    retention_days: int | None = None
    cluster: str | None = None
    budget_backend: str = "file"
    budget_reservation_seconds: float = 600.0
    # interop (tokentrail/interop, exporters/otlp.py): an OTLP/HTTP endpoint that also gets
    # tokentrail's spans (None: OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT if set), and the draft
    # gen_ai.usage.cost.amount/.currency/.source attributes (semantic-conventions PR #443)
    otlp_endpoint: str | None = None
    cost_attributes_draft: bool = False
    config_file: Path | None = None
    # issue 14: amounts shown in this currency at the user's dated rates ([currency] in the
    # file, a tokentrail.currency.Currency); None: USD. The store stays in USD.
    currency: Any = None

    @property
    def embedded(self) -> bool:
        return self.clickhouse_url is None or self.clickhouse_url.startswith("chdb://")

    @property
    def database(self) -> str:
        """The database tokentrail uses: the server URL's path (`.../llm_costs`), else `tokentrail`."""
        return url_database(self.clickhouse_url) or DEFAULT_DATABASE

    @property
    def spool_dir(self) -> Path:
        return self.home / "spool"

    @property
    def public_store(self) -> str:
        """The store as shown to people: the server URL without its credentials, or chdb://path."""
        if self.embedded:
            return f"chdb://{self.embedded_path}"
        scheme, _, rest = (self.clickhouse_url or "").partition("://")
        return f"{scheme}://{rest.rsplit('@', 1)[-1]}"

    @property
    def embedded_path(self) -> Path:
        """Directory of the embedded chdb store."""
        if self.clickhouse_url and self.clickhouse_url.startswith("chdb://"):
            rest = self.clickhouse_url[len("chdb://") :]
            return Path(rest).expanduser()
        return self.home / "store"


def url_database(url: str | None) -> str | None:
    """The database named by a server URL's path, or None (no path, or an embedded URL)."""
    if not url or url.startswith("chdb://"):
        return None
    from urllib.parse import urlsplit

    path = urlsplit(url).path.strip("/")
    return path or None


# name -> (env var, kind)
_FIELDS: dict[str, tuple[str | None, str]] = {
    "clickhouse_url": ("TOKENTRAIL_CLICKHOUSE_URL", "url"),
    "home": ("TOKENTRAIL_HOME", "path"),
    "project": ("TOKENTRAIL_PROJECT", "name"),
    "environment": ("TOKENTRAIL_ENVIRONMENT", "name_or_empty"),
    "budgets": (None, "budgets"),
    "prices": (None, "prices"),
    "capture_content": ("TOKENTRAIL_CAPTURE_CONTENT", "bool"),
    "service_name": ("OTEL_SERVICE_NAME", "name"),
    "webhook_url": ("TOKENTRAIL_WEBHOOK_URL", "webhook"),
    "insert_deadline_s": ("TOKENTRAIL_INSERT_DEADLINE_SECONDS", "seconds"),
    "spool_max_bytes": ("TOKENTRAIL_SPOOL_MAX_BYTES", "bytes"),
    "queue_max_spans": ("TOKENTRAIL_QUEUE_MAX_SPANS", "count"),
    "sql_max_seconds": ("TOKENTRAIL_SQL_MAX_SECONDS", "seconds"),
    "sql_max_memory_bytes": ("TOKENTRAIL_SQL_MAX_MEMORY", "bytes"),
    "sql_max_rows": ("TOKENTRAIL_SQL_MAX_ROWS", "count"),
    "retention_days": ("TOKENTRAIL_RETENTION_DAYS", "days"),
    "cluster": ("TOKENTRAIL_CLUSTER", "identifier"),
    "budget_backend": ("TOKENTRAIL_BUDGET_BACKEND", "ledger"),
    "budget_reservation_seconds": ("TOKENTRAIL_BUDGET_RESERVATION_SECONDS", "seconds"),
    "otlp_endpoint": ("TOKENTRAIL_OTLP_ENDPOINT", "otlp"),
    "cost_attributes_draft": ("TOKENTRAIL_COST_ATTRIBUTES_DRAFT", "bool"),
    "currency": (None, "currency"),
}
ENV_VARS = {name: env for name, (env, _) in _FIELDS.items() if env}


def find_config_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    if explicit is not None:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise ConfigError("config_file", f"{p} does not exist", "fix the path or unset TOKENTRAIL_CONFIG")
        return p
    env = os.environ.get("TOKENTRAIL_CONFIG")
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise ConfigError("TOKENTRAIL_CONFIG", f"{p} does not exist", "fix the path or unset it")
        return p
    p = Path.cwd() / CONFIG_FILE_NAME
    return p if p.is_file() else None


def read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), f"is not valid TOML ({e})", "fix the syntax") from None
    # allow everything either at the top level or under [tokentrail]
    if isinstance(data.get("tokentrail"), dict):
        data = {**{k: v for k, v in data.items() if k != "tokentrail"}, **data["tokentrail"]}
    allowed = set(_FIELDS) | {"dashboard"}
    for key in data:
        if key not in allowed:
            raise ConfigError(
                f"{path.name}: {key}", "is not a tokentrail setting", f"use one of {', '.join(sorted(allowed))}"
            )
    return data


def _check(name: str, kind: str, value: Any, source: str) -> Any:
    where = name if source == "argument" else f"{name} (from {source})"
    if kind == "url":
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not value.startswith(_URL_SCHEMES):
            raise ConfigError(
                where,
                f"{value!r} is not a ClickHouse URL",
                "use http(s)://user:pass@host:8123/db for a server or chdb:///path for the embedded store",
            )
        db = url_database(value)
        if db is not None and not _IDENT_RE.match(db):
            raise ConfigError(
                where,
                f"the URL's path {db!r} is not a database name",
                "name one database after the port, e.g. http://host:8123/llm_costs (letters, digits, _)",
            )
        return value
    if kind == "path":
        if not isinstance(value, (str, os.PathLike)) or str(value) == "":
            raise ConfigError(where, f"{value!r} is not a directory path", "give a directory such as ~/.tokentrail")
        p = Path(value).expanduser()
        if p.exists() and not p.is_dir():
            raise ConfigError(where, f"{p} exists and is not a directory", "point it at a directory")
        return p
    if kind in ("name", "name_or_empty"):
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ConfigError(where, f"{value!r} is not a string", "give a short name such as 'checkout'")
        if value == "" and kind == "name_or_empty":
            return ""
        if not _NAME_RE.match(value):
            raise ConfigError(
                where,
                f"{value!r} is not a valid name",
                "use 1-128 letters, digits and _ . : / @ + - (no spaces)",
            )
        return value
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(where, f"{value!r} is not true or false", "use true or false")
    if kind == "days":
        if value is None or value == "":
            return None
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        raise ConfigError(where, f"{value!r} is not a whole number of days", "use e.g. 90 (0 removes the retention)")
    if kind == "identifier":
        if value is None or value == "":
            return None
        if not isinstance(value, str) or not _IDENT_RE.match(value):
            raise ConfigError(where, f"{value!r} is not a ClickHouse cluster name", "use the name under <remote_servers> (letters, digits, _)")
        return value
    if kind == "webhook":
        if value in (None, ""):
            return None
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            raise ConfigError(where, f"{value!r} is not an http(s) URL", "give the full URL, e.g. https://hooks.example.com/x")
        return value
    if kind == "otlp":
        if value in (None, ""):
            return None
        if value == "none" or (isinstance(value, str) and value.startswith(("http://", "https://"))):
            return value
        raise ConfigError(where, f"{value!r} is not an http(s) URL", "give the OTLP/HTTP endpoint, e.g. http://localhost:4318 (or none)")
    if kind == "seconds":
        try:
            seconds = float(value) if not isinstance(value, bool) else -1.0
        except (TypeError, ValueError):
            seconds = -1.0
        if not 0 < seconds < 1e6:
            raise ConfigError(where, f"{value!r} is not a number of seconds", "give a positive number such as 5 or 0.5")
        return seconds
    if kind == "count":
        n = value if isinstance(value, int) and not isinstance(value, bool) else None
        if isinstance(value, str) and value.strip().replace("_", "").isdigit():
            n = int(value.strip().replace("_", ""))
        if n is None or n < 1:
            raise ConfigError(where, f"{value!r} is not a whole number of at least 1", "give one such as 1000")
        return n
    if kind == "bytes":
        size = _bytes(value)
        if size is None or size < 1:
            raise ConfigError(where, f"{value!r} is not a size", "give bytes or a size such as 512MiB or 2GiB")
        return size
    if kind == "ledger":
        if value in (None, ""):
            return "file"
        if not isinstance(value, str) or not (value in ("file", "memory") or value.startswith(("file://", "redis://", "rediss://", "unix://"))):
            raise ConfigError(where, f"{value!r} is not a budget ledger", 'use "file" (default), "memory" or "redis://host:6379/0"')
        return value
    if kind == "prices":
        from .pricing import parse_overrides

        return parse_overrides(value)
    if kind == "budgets":
        if value is None:
            return ()
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ConfigError(where, "must be a list of Budget objects", "pass budgets=[tokentrail.Budget(...), ...]")
        from .budgets import coerce_budgets

        return tuple(coerce_budgets(value, to_usd=_budget_to_usd(_BUDGET_CURRENCY.get())))
    if kind == "currency":
        from .currency import parse_currency

        return parse_currency(value)
    raise AssertionError(kind)  # pragma: no cover


def format_size(n: int) -> str:
    """Bytes for people: 512 MiB, 1 GiB, 300 bytes."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:.3g} {unit}"
    return f"{n} bytes"


def _bytes(value: Any) -> int | None:
    """Bytes from an int or a size: "512MiB", "2 GiB", "1GB", "4096"."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        return None
    m = _SIZE_RE.match(value)
    if not m:
        return None
    unit = (m.group(2) or "").upper().removesuffix("B")  # "", "K", "KI", "M", "MI", ...
    if not unit:
        return int(float(m.group(1)))
    power = "KMGT".index(unit[0]) + 1
    return int(float(m.group(1)) * ((1024 if unit.endswith("I") else 1000) ** power))


_UNSET: Any = object()
_BUDGET_CURRENCY: ContextVar[Any] = ContextVar("tokentrail_budget_currency", default=None)


def _budget_to_usd(currency: Any) -> Any:
    """The hook budgets/model.py converts a limit set in a currency with: at the rate of the
    day the settings are resolved (clock.now()), with [currency]'s rates."""

    def to_usd(amount: Any, code: str, where: str) -> Any:
        from .clock import now

        if currency is None or currency.code != code:
            raise ConfigError(where, f"{code} has no exchange rates here", f'add [currency] with code = "{code}" and its rates to tokentrail.toml')
        return currency.to_usd(amount, now())

    return to_usd


def resolve(config_file: str | os.PathLike[str] | None = None, **arguments: Any) -> Settings:
    """Resolve every setting: argument, environment variable, tokentrail.toml, default."""
    for key in arguments:
        if key not in _FIELDS:
            raise ConfigError(key, "is not a configure() argument", f"use one of {', '.join(_FIELDS)}")
    path = find_config_file(config_file)
    file_values = read_config_file(path) if path else {}
    cur = file_values.get("currency")
    if path and isinstance(cur, dict) and cur.get("rates_file"):  # relative to the file, not the cwd
        file_values["currency"] = {**cur, "rates_file": str(path.parent / str(cur["rates_file"]))}
    # budgets may be set in the configured currency: its rates are known before they are parsed
    currency_value = arguments.get("currency") if arguments.get("currency") is not None else file_values.get("currency")
    token = _BUDGET_CURRENCY.set(_check("currency", "currency", currency_value, "currency") if currency_value is not None else None)
    try:
        return _resolve(path, file_values, arguments)
    finally:
        _BUDGET_CURRENCY.reset(token)


def _resolve(path: Path | None, file_values: dict[str, Any], arguments: dict[str, Any]) -> Settings:
    values: dict[str, Any] = {}
    for name, (env, kind) in _FIELDS.items():
        arg = arguments.get(name, _UNSET)
        if arg is not _UNSET and arg is not None and not (name in ("budgets",) and arg == ()):
            values[name] = _check(name, kind, arg, "argument")
        elif env and os.environ.get(env) is not None:
            values[name] = _check(name, kind, os.environ[env], env)
        elif name in file_values:
            values[name] = _check(name, kind, file_values[name], path.name if path else "file")
    values["config_file"] = path
    settings = Settings(**values)
    if settings.cluster and settings.embedded:
        raise ConfigError(
            "cluster", f"{settings.cluster!r} needs a ClickHouse server", "set clickhouse_url to http(s)://user:pass@host:8123/db"
        )
    return settings
