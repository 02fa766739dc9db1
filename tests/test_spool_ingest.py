"""Spool files the store refuses: a torn file and a foreign one are set aside once, with the
error beside them; the other files are ingested; no reader fails; `tokentrail ingest` says what
was set aside and what to do; `--retry-rejected` puts them back after a fix."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tokentrail.cli import main
from tokentrail.config import resolve
from tokentrail.exporters.rows import encode
from tokentrail.store import open_store, spool
from tokentrail.store.ingest import refuses_data


def _rows(*ids: str) -> bytes:
    return encode(
        {"timestamp": "2026-03-18 12:00:00.000000", "span_id": i, "name": "chat m", "operation": "chat", "cost_usd": "0.000001000"}
        for i in ids
    )


def test_torn_and_foreign_files_are_set_aside_once_and_the_rest_is_stored(tt_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = resolve()
    d = settings.spool_dir
    spool.write(d, "spans", "good1", _rows("a", "b"))
    torn = spool.write(d, "spans", "torn1", _rows("c") + b'{"timestamp": "2026-03-18 12:00:00", "span_id": "d", "na')
    foreign = d / "export-from-elsewhere.jsonl"  # copied in: not a spool name
    foreign.write_text('{"user": "x"}\n')
    alien = spool.write(d, "users", "x1", b'{"a": 1}\n')  # a spool name, but no table of ours
    bad_value = spool.write(d, "spans", "neg1", b'{"span_id": "e", "input_tokens": -5}\n')  # an old writer's bug
    spool.write(d, "spans", "good2", _rows("f"))

    assert main(["sql", "SELECT count() AS n FROM tokentrail.spans", "--format", "json"]) == 0  # the reader works
    assert '"n": 3' in capsys.readouterr().out
    rejected = {r.path.name: r for r in spool.rejected(d)}
    assert set(rejected) == {torn.name, foreign.name, alien.name, bad_value.name}
    assert "Cannot parse" in rejected[torn.name].error or "Code: 2" in rejected[torn.name].error
    assert "not a tokentrail spool file" in rejected[foreign.name].error and "not a tokentrail" in rejected[alien.name].error
    assert (d / "rejected" / (torn.name + ".error.txt")).read_text().strip() == rejected[torn.name].error
    assert spool.count(d) == 0
    # once: later readers see nothing more to set aside, and nothing is stored twice
    for _ in range(2):
        with open_store(settings) as store:
            assert store.rows("SELECT count(), sum(cost_usd) FROM tokentrail.spans") == [(3, Decimal("0.000003"))]
    assert len(spool.rejected(d)) == 4


def test_ingest_says_what_was_set_aside_and_how_to_retry(tt_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = resolve().spool_dir
    spool.write(d, "spans", "ok", _rows("a"))
    torn = spool.write(d, "spans", "torn", b'{"span_id": "x", "name": "ch')
    assert main(["ingest"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "ingested 1 batch" in out and "1 spans" in out
    assert f"set aside {d / 'rejected' / torn.name}" in out
    assert "tokentrail ingest --retry-rejected" in out and ".error.txt" in out
    # the user fixes the file, then retries: it is stored, exactly once
    (d / "rejected" / torn.name).write_bytes(_rows("x"))
    assert main(["ingest", "--retry-rejected"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "retried 1 set-aside file" in out and "ingested 1 batch" in out
    assert spool.rejected(d) == []
    assert main(["sql", "SELECT count() AS n FROM tokentrail.spans", "--format", "json"]) == 0
    assert '"n": 2' in capsys.readouterr().out


def test_a_failure_that_is_not_the_files_keeps_the_file(tt_home: Path) -> None:
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    assert not refuses_data(OperationalError("HTTPConnectionPool: Max retries exceeded (connection refused)"))
    assert not refuses_data(DatabaseError("Code: 241. DB::Exception: Memory limit (total) exceeded"))
    assert not refuses_data(DatabaseError("Code: 252. DB::Exception: Too many parts"))
    assert not refuses_data(DatabaseError("HTTP driver received HTTP status 503"))  # a proxy: no server code
    assert refuses_data(DatabaseError("Code: 27. DB::Exception: Cannot parse input: expected '{'"))
    assert refuses_data(DatabaseError("'utf-8' codec can't decode byte 0x80 in position 2"))
    # an unreachable store: the ingest raises, the file stays where it is
    d = resolve().spool_dir
    path = spool.write(d, "spans", "keep", _rows("a"))

    def down(table: str, data: bytes, batch_id: str) -> None:
        raise OperationalError("connection refused")

    from tokentrail.store import ingest_spool

    with pytest.raises(OperationalError):
        ingest_spool(None, d, insert=down)
    assert path.exists() and spool.rejected(d) == []
