"""`tokentrail status`, run as another process would: store reachable or not (and why), spool
depth, set-aside files, spans lost and their cost, the last export error."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from chserver import HungServer
from opentelemetry.trace import SpanKind

from tokentrail import runtime, testing
from tokentrail.cli import main
from tokentrail.store import spool


def _status(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["status", "--format", "json", *args])
    return code, json.loads(capsys.readouterr().out)


def _model_span(rt: runtime.Tokentrail, cost: str) -> None:
    rt.tracer.start_span(
        "chat m", kind=SpanKind.CLIENT, attributes={"gen_ai.operation.name": "chat", "tokentrail.cost.usd": cost}
    ).end()


def test_healthy_embedded_store(tt: runtime.Tokentrail, capsys: pytest.CaptureFixture[str]) -> None:
    _model_span(tt, "0.5")
    assert tt.flush()
    code, st = _status(capsys)
    assert code == 0
    assert st["store"]["reachable"] and st["store"]["spans"] == 0  # status does not ingest
    assert (st["spool"]["files"], st["spool"]["max_bytes"]) == (1, 1 << 30) and st["spool"]["bytes"] > 0
    assert st["set_aside"] == [] and st["lost"]["spans"] == 0 and st["last_export_error"] is None
    assert main(["status"]) == 0
    table = capsys.readouterr().out
    assert "reachable" in table and "1 file(s)" in table and "tokentrail ingest" in table


def test_losses_set_aside_files_and_spool_depth(tt_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rt = runtime.configure(home=tt_home, spool_max_bytes=1200)  # room for a few of the 10 batches
    try:
        for _ in range(10):
            _model_span(rt, "0.25")
            assert rt.flush()
    finally:
        rt.shutdown()  # the lost-spans record goes to the spool
        testing.reset()
    kept = [f for f in spool.pending(rt.settings.spool_dir) if f.table == "spans"]
    torn = spool.write(rt.settings.spool_dir, "spans", "torn", b'{"span_id": "x", "na')
    code, st = _status(capsys)  # the spool is not ingested: the loss is read from its record there
    lost = st["lost"]
    assert code == 0 and len(kept) + lost["spans"] == 10 and lost["spans"] == lost["model_spans"] > 0
    assert Decimal(lost["cost_usd"]) == Decimal("0.25") * lost["spans"] and lost["last_reason"] == "spool_full"
    records = [f for f in spool.pending(rt.settings.spool_dir) if f.table == "lost_spans"]
    assert records and st["spool"]["files"] == len(kept) + len(records) + 1  # spans, loss records, the torn file
    assert main(["ingest"]) == 0  # stores what it can, sets the torn file aside
    code, st = _status(capsys)
    assert st["store"]["spans"] == len(kept) and st["spool"]["files"] == 0
    assert [Path(r["path"]).name for r in st["set_aside"]] == [torn.name] and "Cannot parse" in st["set_aside"][0]["error"]
    assert Decimal(st["lost"]["cost_usd"]) == Decimal("0.25") * st["lost"]["spans"]  # now from tokentrail.lost_spans
    assert main(["status"]) == 0
    table = " ".join(capsys.readouterr().out.split())
    assert "spool_full" in table and "--retry-rejected" in table and "model calls" in table


def test_hung_server_is_unreachable_and_its_export_error_is_shown(
    tt_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with HungServer() as hung:
        # the application, in another process: its exports time out and it records why
        app = (
            "import sys, tokentrail\n"
            "from tokentrail import runtime\n"
            "rt = runtime.configure(home=sys.argv[1], clickhouse_url=sys.argv[2], insert_deadline_s=0.5)\n"
            "rt.tracer.start_span('chat m', attributes={'gen_ai.operation.name': 'chat'}).end()\n"
            "rt.flush(); rt.shutdown()\n"
        )
        subprocess.run([sys.executable, "-c", app, str(tt_home), hung.url], check=True, timeout=120)
        monkeypatch.setenv("TOKENTRAIL_CLICKHOUSE_URL", hung.url)
        code, st = _status(capsys, "--timeout", "1")
    assert code == 1
    assert st["store"]["reachable"] is False and st["store"]["why"] == "no answer within 1 s"
    err = st["last_export_error"]
    assert err["last_error"] == (
        f"timeout: ClickHouse at {hung.url.replace('default:@', '')} did not answer in time (no answer within 0.5 s); "
        "check the server's load and the network (tokentrail retries)"
    )
    assert err["alive"] is False and err["failing_since"]
    assert st["spool"]["files"] == 1 and st["lost"]["spans"] == 0  # spooled, not lost
