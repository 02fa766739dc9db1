"""The demo's LlamaIndex traffic: real LlamaIndex pipelines on offline models whose usage
comes in each provider's shape, spread over the demo clock, priced and attributed."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from genai_prices import Usage as GPUsage
from genai_prices import calc_price

from tokentrail import runtime
from tokentrail.demo import DemoClock, content, llamaindex_traffic
from tokentrail.instrumentation import llamaindex as li_mod


def test_llamaindex_traffic_fills_the_store(tt: runtime.Tokentrail, read_spans: Any) -> None:
    end = datetime(2026, 3, 18, 12, 0, tzinfo=timezone.utc)
    clock = DemoClock(end - timedelta(days=3), end, random.Random(3))
    tt.clock = clock
    made = llamaindex_traffic.run(120, random.Random(4), clock)
    assert 120 <= made <= 135
    assert not li_mod.active()  # the demo undid its instrumentation
    rows = read_spans("framework = 'llamaindex'")
    models = {r["request_model"] for r in rows if r["operation"] in ("chat", "text_completion", "embeddings")}
    assert models == {"gpt-4o-mini", "claude-3-5-haiku", "text-embedding-3-small"}
    # every span inside the window, on the demo clock
    assert all(clock.start <= r["timestamp"].replace(tzinfo=timezone.utc) <= clock.end + timedelta(hours=1) for r in rows)

    calls = [r for r in rows if r["operation"] in ("chat", "text_completion") and r["status"] == "ok"]
    assert calls and all(r["cost_status"] == "priced" and r["cost_usd"] > 0 and not r["usage_estimated"] for r in calls)
    haiku = [r for r in calls if r["request_model"] == "claude-3-5-haiku"]
    # the support policy prompt is cached: writes, then reads, in Anthropic's accounting
    assert sum(r["cache_write_tokens"] for r in haiku) > 0 and sum(r["cache_read_tokens"] for r in haiku) > 0
    r = next(r for r in haiku if r["cache_read_tokens"])
    expected = calc_price(
        GPUsage(
            input_tokens=r["input_tokens"],
            cache_read_tokens=r["cache_read_tokens"],
            cache_write_tokens=r["cache_write_tokens"],
            output_tokens=r["output_tokens"],
        ),
        model_ref=r["response_model"],
        provider_id="anthropic",
        genai_request_timestamp=r["timestamp"],
    ).total_price
    assert r["cost_usd"] == expected and r["response_model"] == "claude-3-5-haiku-20241022"
    assert r["input_tokens"] > r["cache_read_tokens"] >= 1024

    # streamed doc-search answers carry a time to first token, on the demo clock
    assert any(r["time_to_first_token_ms"] for r in calls if r["request_model"] == "gpt-4o-mini")
    emb = [r for r in rows if r["operation"] == "embeddings"]
    assert emb and all(r["usage_estimated"] and r["cost_usd"] == Decimal("0.00000002") * r["input_tokens"] for r in emb)

    # attribution from the demo world; support chats carry their session
    requests = [r for r in rows if r["parent_span_id"] == ""]
    features = {r["feature"] for r in requests if r["feature"]}
    assert features == {"doc-search", "support-chat"}
    for q in requests:
        if not q["feature"]:
            continue  # the index builds
        f = content.FEATURES[q["feature"]]
        assert (q["project"], q["team"]) == (f.project, f.team) and q["user_id"]
        assert q["tags"] == ["llamaindex"]
        if q["feature"] == "support-chat":
            assert q["session_id"].startswith("sess_")
    assert tt.open_spans == 0
