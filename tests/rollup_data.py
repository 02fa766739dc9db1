"""Spans for the rollup tests: varied on every dimension a rollup keeps, across hour, day and
month boundaries, written in many batches (so the rollups hold unmerged rows, as they do live).

The clock is fixed (NOW): nothing depends on the calendar."""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from tokentrail.store import insert_settings

NOW = datetime(2026, 3, 2, 14, 23, 17, 512345, tzinfo=timezone.utc)  # two days into a month

MODELS = (
    ("gpt-4o-mini", "openai", Decimal("0.00000015"), Decimal("0.0000006")),
    ("gpt-4o", "openai", Decimal("0.0000025"), Decimal("0.00001")),
    ("claude-sonnet-4-5", "anthropic", Decimal("0.000003"), Decimal("0.000015")),
    ("gemini-2.5-pro", "gcp.gemini", Decimal("0.00000125"), Decimal("0.00001")),  # tiered above 200k
    ("my-local-llm", "ollama", None, None),  # unpriced
)


def _ts(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def rows(n_traces: int = 600, seed: int = 11, now: datetime = NOW) -> list[dict[str, Any]]:
    NOW = now  # noqa: N806 (the spans' clock)
    rnd = random.Random(seed)
    out: list[dict[str, Any]] = []
    for t in range(n_traces):
        # 40 days back from NOW, more lately; some right at the edges of hours and days
        if t % 17 == 0:
            start = (NOW - timedelta(days=rnd.randint(0, 35))).replace(minute=59, second=59, microsecond=999000)
        elif t % 19 == 0:
            start = (NOW - timedelta(days=rnd.randint(0, 35))).replace(hour=23, minute=59, second=59, microsecond=990000)
        else:
            start = NOW - timedelta(seconds=rnd.random() ** 1.5 * 40 * 86400 + 5)
        trace_id = uuid.UUID(int=rnd.getrandbits(128)).hex
        root_id = f"{rnd.getrandbits(64):016x}"
        who = {
            "project": rnd.choice(["shop", "search"]),
            "environment": rnd.choice(["production", "staging", ""]),
            "team": rnd.choice(["search", "growth", "support", ""]),
            "feature": rnd.choice(["qa", "chat", "summaries"]),
            "user_id": rnd.choice(["alice", "bob", "carol", "dave", "erin", ""]),
            "session_id": f"s{rnd.randint(1, 30)}",
            "tags": rnd.choice([[], ["beta"], ["beta", "vip"], ["vip"]]),
        }
        out.append({"timestamp": _ts(start), "duration_ms": 900.0, "trace_id": trace_id, "span_id": root_id,
                    "name": "invoke_workflow rag", "operation": "invoke_workflow", "framework": "langchain", **who})  # fmt: skip
        for k in range(rnd.randint(1, 3)):
            model, provider, p_in, p_out = rnd.choice(MODELS)
            op = "embeddings" if k == 2 else rnd.choice(["chat", "chat", "text_completion"])
            inp = rnd.choice([rnd.randint(1, 4000), rnd.randint(1, 4000), 250_000, 40_000])
            cache = rnd.choice([0, 0, inp // 2])
            out_tok = 0 if op == "embeddings" else rnd.randint(1, 900)
            reasoning = out_tok // 3 if model == "gpt-4o" and rnd.random() < 0.3 else 0
            cost = None if p_in is None else (inp * p_in + out_tok * p_out).quantize(Decimal("0.000000001"))
            error = rnd.random() < 0.08
            out.append(
                {
                    "timestamp": _ts(start + timedelta(milliseconds=100 + 400 * k)),
                    "duration_ms": 300.0,
                    "trace_id": trace_id,
                    "span_id": f"{rnd.getrandbits(64):016x}",
                    "parent_span_id": root_id,
                    "name": f"{op} {model}",
                    "operation": op,
                    "framework": "langchain",
                    "provider": provider,
                    "request_model": model,
                    "response_model": model if rnd.random() < 0.7 else "",
                    "input_tokens": inp,
                    "output_tokens": out_tok,
                    "cache_read_tokens": cache,
                    "reasoning_tokens": reasoning,
                    "usage_estimated": rnd.random() < 0.1,
                    "cost_usd": None if cost is None else str(cost),
                    "input_cost_usd": None if cost is None else str((inp * p_in).quantize(Decimal("0.000000001"))),
                    "cost_status": "unpriced" if cost is None else "priced",
                    "status": "error" if error else "ok",
                    "error_type": rnd.choice(["RateLimitError", "APITimeoutError"]) if error else "",
                    **who,
                }
            )
    return out


def write(client: Any, settings: Any, spans: list[dict[str, Any]], *, batch: int = 97) -> None:
    """Insert through the exporter's insert settings, in many batches."""
    for i in range(0, len(spans), batch):
        payload = "".join(json.dumps(r) + "\n" for r in spans[i : i + batch]).encode()
        client.raw_insert(
            f"{settings.database}.spans", None, insert_block=payload, fmt="JSONEachRow",
            settings=insert_settings(settings, f"rollup-test-{i}"),
        )  # fmt: skip
