"""Attribution: who and what spends. `attributes(...)` sets it for everything inside (contextvars)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields, replace
from typing import Any

from . import semconv

FIELDS = ("project", "environment", "team", "feature", "user_id", "session_id", "tags")


@dataclass(frozen=True, slots=True)
class Attribution:
    """Attribution fields. Empty string / empty tuple means unset."""

    project: str = ""
    environment: str = ""
    team: str = ""
    feature: str = ""
    user_id: str = ""
    session_id: str = ""
    tags: tuple[str, ...] = field(default=())

    def merged(self, inner: Attribution) -> Attribution:
        """Inner values win; tags accumulate (outer first, no duplicates)."""
        changes: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "tags":
                if inner.tags:
                    changes["tags"] = tuple(dict.fromkeys((*self.tags, *inner.tags)))
            else:
                v = getattr(inner, f.name)
                if v:
                    changes[f.name] = v
        return replace(self, **changes) if changes else self

    def span_attributes(self) -> dict[str, Any]:
        # explicit tests, not a loop over a table: this runs for every LlamaIndex span
        out: dict[str, Any] = {}
        if self.project:
            out[semconv.PROJECT] = self.project
        if self.environment:
            out[semconv.ENVIRONMENT] = self.environment
        if self.team:
            out[semconv.TEAM] = self.team
        if self.feature:
            out[semconv.FEATURE] = self.feature
        if self.user_id:
            out[semconv.USER_ID] = self.user_id
        if self.session_id:
            out[semconv.SESSION_ID] = self.session_id
            out[semconv.GEN_AI_CONVERSATION_ID] = self.session_id  # the OTel GenAI name for it
        if self.tags:
            out[semconv.TAGS] = list(self.tags)
        return out

    def get(self, name: str) -> str:
        return getattr(self, name) if name != "tags" else ",".join(self.tags)


EMPTY = Attribution()
_current: ContextVar[Attribution] = ContextVar("tokentrail_attribution", default=EMPTY)


def _coerce(values: Mapping[str, Any]) -> Attribution:
    kw: dict[str, Any] = {}
    for k, v in values.items():
        if v is None:
            continue
        if k not in FIELDS:
            from .errors import ConfigError

            raise ConfigError(k, "is not an attribution field", f"use one of {', '.join(FIELDS)}")
        if k == "tags":
            kw["tags"] = (v,) if isinstance(v, str) else tuple(str(t) for t in v)
        else:
            kw[k] = str(v)
    return Attribution(**kw)


def current() -> Attribution:
    return _current.get()


@contextmanager
def attributes(
    *,
    project: str | None = None,
    environment: str | None = None,
    team: str | None = None,
    feature: str | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
    tags: Iterable[str] | str | None = None,
) -> Iterator[Attribution]:
    """Attribute everything inside the block: `with tokentrail.attributes(user_id="bob"): ...`."""
    inner = _coerce(
        dict(
            project=project,
            environment=environment,
            team=team,
            feature=feature,
            user_id=user_id,
            session_id=session_id,
            tags=tags,
        )
    )
    merged = _current.get().merged(inner)
    token = _current.set(merged)
    try:
        yield merged
    finally:
        _current.reset(token)


def __getattr__(name: str) -> object:
    if name == "from_langchain":  # moved into the integration (the core imports no framework)
        raise AttributeError(
            "tokentrail.context.from_langchain moved: from tokentrail.instrumentation.langchain.readers import attribution_of"
        )
    raise AttributeError(f"module 'tokentrail.context' has no attribute {name!r}")
