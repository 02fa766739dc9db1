"""Shared fixtures: every test gets its own tokentrail home (embedded store + spool); a test that
reads "now" (today, this month, a period, a relative window) takes the `clock` fixture."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clocks import DEFAULT_NOW, FixedClock, installed

import tokentrail
from tokentrail import runtime, testing
from tokentrail.store import open_store

# keep the developer's own config and env out of the tests
for _var in list(os.environ):
    if _var.startswith("TOKENTRAIL_"):
        del os.environ[_var]


@pytest.fixture(scope="session", autouse=True)
def _tokenizers_loaded() -> None:
    """Budget reservations count a prompt with an upper bound until the tokenizer has loaded
    (tokens.py): load both encodings up front, so that no test's figures depend on test order."""
    from tokentrail import tokens

    tokens.count_tokens("warm up", "gpt-4o")
    tokens.count_tokens("warm up", "gpt-4")


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> Iterator[FixedClock]:
    """tokentrail's wall clock fixed at DEFAULT_NOW (or at the moment a test parametrizes it
    with, see clocks.at_calendar_edges) for the test; it moves only when the test moves it."""
    with installed(FixedClock(getattr(request, "param", DEFAULT_NOW))) as fixed:
        yield fixed


@pytest.fixture
def tt_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "tt-home"
    monkeypatch.setenv("TOKENTRAIL_HOME", str(home))
    monkeypatch.chdir(tmp_path)  # no stray tokentrail.toml
    return home


@pytest.fixture
def tt(tt_home: Path) -> Iterator[runtime.Tokentrail]:
    """A configured default instance writing to a fresh embedded store."""
    inst = tokentrail.configure(home=tt_home, project="test")
    yield inst
    inst.shutdown()
    testing.reset()


@pytest.fixture
def runtimes() -> Iterator[list[runtime.Tokentrail]]:
    """The instances a test configures (append each): shut down, the default reset, at the end."""
    made: list[runtime.Tokentrail] = []
    yield made
    for inst in made:
        inst.shutdown()
    testing.reset()


def spans(inst: runtime.Tokentrail, where: str = "1") -> list[dict[str, Any]]:
    """Flush, open the store (ingesting the spool) and return the spans as dicts, oldest first."""
    inst.flush()
    with open_store(inst.settings) as store:
        res = store.query(f"SELECT * FROM tokentrail.spans WHERE {where} ORDER BY timestamp, name")
        return [dict(zip(res.column_names, row, strict=True)) for row in res.result_rows]


@pytest.fixture
def read_spans(tt: runtime.Tokentrail) -> Any:
    return lambda where="1": spans(tt, where)


@pytest.fixture
def mem(tt_home: Path) -> Iterator[tuple[runtime.Tokentrail, Any]]:
    """A configured instance whose spans also go to an in-memory exporter (LangChain tests)."""
    from otel_helpers import configure_memory, no_context_left

    rt, exporter = configure_memory(tt_home)
    yield rt, exporter
    rt.shutdown()
    testing.reset()
    assert no_context_left(), "a span of ours is still the current OTel context"


# -- a real ClickHouse server (tests/chserver.py) ------------------------------------------------
@pytest.fixture(scope="session")
def ch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One ClickHouse server for the session; each test uses a database of its own (ch_url)."""
    from chserver import ClickHouseServer

    server = ClickHouseServer(tmp_path_factory.mktemp("clickhouse")).start()
    yield server
    server.stop()


@pytest.fixture
def ch_url(ch_server: Any) -> str:
    """`http://default:@127.0.0.1:PORT/t_<random>`: a database of its own, not yet created."""
    import uuid

    return str(ch_server.url_for("t_" + uuid.uuid4().hex[:12]))
