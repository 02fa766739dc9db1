"""The price memo with many model names: a burst of new names is written in a few writes of
the file (not one each), and nothing put is lost (flush at exit writes the rest)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tokentrail import price_memo
from tokentrail.pricing import PriceBook
from tokentrail.usage import Usage


def test_a_burst_of_new_names_is_written_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(price_memo, "_COALESCE_S", 30.0)  # the writer waits: every put below lands in one write
    writes: list[int] = []
    real = price_memo.PlanMemo._write
    monkeypatch.setattr(price_memo.PlanMemo, "_write", lambda self, mine: (writes.append(len(mine)), real(self, mine)))
    book = PriceBook(memo_dir=tmp_path)
    when = datetime(2026, 3, 18, 12, tzinfo=timezone.utc)
    costs = [book.cost(Usage(1000, 100), f"acme-internal-{i}", "openai", when) for i in range(400)]
    costs.append(book.cost(Usage(1000, 100), "gpt-4o", "openai", when))
    assert [c.status for c in costs] == ["unpriced"] * 400 + ["priced"]
    assert writes == []
    book._memo.flush()  # what atexit runs
    assert writes == [401]
    plans = json.loads((tmp_path / "cache" / "prices.json").read_text())["plans"]
    assert len(plans) == 401 and plans["acme-internal-7\topenai\t2026-03-18"] is None
    book._memo.flush()  # nothing new: no write
    assert writes == [401]
