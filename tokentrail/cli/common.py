"""What every command shares: exit codes, the one-line parser errors, the settings, the store."""

from __future__ import annotations

import argparse
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, NoReturn

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import Settings
    from ..queries import Filters
    from ..store import Store

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2

LOCK_TIMEOUT_S = 30.0  # how long a command waits for another reader of the embedded store


class UsageError(Exception):
    """Bad command line: argparse's message, made one line."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"tokentrail: {self.prog.removeprefix('tokentrail').strip() or 'usage'}: {message}; see '{self.prog} --help'")


def settings(args: argparse.Namespace) -> Settings:
    from ..config import resolve

    return resolve(config_file=args.config)


def open_store(settings: Settings, *, ingest: bool = True) -> AbstractContextManager[Store]:
    from ..store import open_store as open_

    return open_(settings, ingest=ingest, lock_timeout=LOCK_TIMEOUT_S)


def filters(args: argparse.Namespace) -> Filters:
    from ..queries import Filters

    def one_or_many(v: list[str] | None) -> str | tuple[str, ...] | None:
        if not v:
            return None
        return v[0] if len(v) == 1 else tuple(v)

    found = Filters(
        since=args.since,
        until=args.until,
        project=one_or_many(args.project),
        environment=one_or_many(args.environment),
        team=one_or_many(args.team),
        feature=one_or_many(args.feature),
        user_id=one_or_many(args.user),
        model=one_or_many(args.model),
        provider=one_or_many(args.provider),
    )
    try:
        found.time_range()
    except ConfigError as e:  # name the flag the user typed
        raise ConfigError(f"--{e.field}", e.problem, e.fix) from None
    return found


def flag_time(value: str, flag: str) -> datetime:
    from ..queries import parse_time

    try:
        return parse_time(value, field_name=flag)
    except ConfigError as e:
        raise ConfigError(flag, e.problem, e.fix) from None
