"""The rows of tokentrail.prices: every price tokentrail uses, effective-dated.

From the installed genai-prices package (offline: its bundled data), one row per provider,
model, period between price changes, service tier and long-context step; from the overrides
(per MTok or a GPU hour turned per token), one row per override. ``sync`` inserts a version's
rows once: a new genai-prices version (or changed overrides) adds its own rows beside the old.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any

from .ids import STANDARD, breakpoints, genai_price_id, genai_version, override_price_id, tier_of
from .money import CTX
from .overrides import PriceOverride

__all__ = ["COLUMNS", "genai_rows", "has_version", "insert_rows", "override_rows", "sync"]

COLUMNS = (
    "price_id", "version", "source", "provider", "model", "match_rule", "tier", "conditions", "valid_from", "valid_to",
    "min_input_tokens", "input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "cache_write_1h_mtok",
    "reasoning_mtok", "web_search_kcount", "requests_kcount", "synced_at",
)  # fmt: skip
_KEYS = {
    "input_mtok": "input_mtok",
    "output_mtok": "output_mtok",
    "cache_read_mtok": "cache_read_mtok",
    "cache_write_mtok": "cache_write_mtok",
    "cache_write_1h_mtok": "cache_write_1h_mtok",
    "output_reasoning_mtok": "reasoning_mtok",
    "web_searches_kcount": "web_search_kcount",
    "requests_kcount": "requests_kcount",
}
BEGIN = datetime(1970, 1, 1, tzinfo=timezone.utc)
END = datetime(2299, 12, 31, tzinfo=timezone.utc)


def match_rule(m: Any) -> str:
    """genai-prices' match logic in words: starts with 'gpt-4o' or equals 'x'."""
    for attr, word in (("starts_with", "starts with"), ("ends_with", "ends with"), ("contains", "contains"),
                       ("equals", "equals"), ("regex", "matches")):  # fmt: skip
        if hasattr(m, attr):
            return f"{word} {getattr(m, attr)!r}"
    if hasattr(m, "or_"):
        return " or ".join(match_rule(c) for c in m.or_)
    if hasattr(m, "and_"):
        return " and ".join(f"({match_rule(c)})" for c in m.and_)
    return str(m)


def _steps(model_price: Any) -> list[tuple[int, dict[str, Decimal]]]:
    """Long-context tiers flattened: (min input tokens, the prices from there)."""
    from genai_prices.types import TieredPrices

    prices = {k: v for k, v in vars(model_price).items() if k in _KEYS and v is not None}
    starts = sorted({t.start for v in prices.values() if isinstance(v, TieredPrices) for t in v.tiers})
    out = []
    for floor in (0, *(s + 1 for s in starts)):
        step: dict[str, Decimal] = {}
        for k, v in prices.items():
            if isinstance(v, TieredPrices):
                p = v.base
                for t in v.tiers:  # genai-prices: the highest tier whose start the input exceeds
                    if floor > t.start:
                        p = t.price
                step[_KEYS[k]] = p
            elif isinstance(v, Decimal):
                step[_KEYS[k]] = v
        out.append((floor, step))
    return out


_PLACES = Decimal("1e-12")  # the table's Decimal(38, 12)


def _row(**kw: Any) -> dict[str, Any]:
    row = {c: None for c in COLUMNS}
    row.update(kw)
    for k, v in row.items():  # rounded half-even here, not truncated by the insert
        if isinstance(v, Decimal):
            row[k] = v.quantize(_PLACES, context=CTX)
    return row


def genai_rows(now: datetime) -> Iterator[dict[str, Any]]:
    from genai_prices.data import providers
    from genai_prices.types import TimeOfDateConstraint

    version = genai_version()
    for provider in providers:
        for info in provider.models:
            breaks = breakpoints(info)
            starts: list[date | None] = [None, *breaks]
            variants: dict[str, dict[str, str]] = {}
            for v in info.price_variants or ():
                variants.setdefault(tier_of(v.when), dict(v.when))
            tod = isinstance(info.prices, list) and any(isinstance(c.constraint, TimeOfDateConstraint) for c in info.prices)
            for i, start in enumerate(starts):
                valid_from = BEGIN if start is None else datetime.combine(start, time(), timezone.utc)
                valid_to = END if i + 1 == len(starts) else datetime.combine(starts[i + 1], time(), timezone.utc)  # type: ignore[arg-type]
                for tier, when in ((STANDARD, {}), *variants.items()):
                    model_price = info.get_prices(valid_from, when or None)
                    conditions: dict[str, Any] = {"when": when} if when else {}
                    if tod:
                        conditions["time_of_day"] = "prices vary by time of day; the row holds those at 00:00 UTC"
                    if info.context_window:
                        conditions["context_window"] = info.context_window
                    pid = genai_price_id(provider.id, info.id, start, tier)
                    for floor, step in _steps(model_price):
                        yield _row(
                            price_id=pid, version=version, source="genai-prices", provider=provider.id, model=info.id,
                            match_rule=match_rule(info.match), tier=tier, conditions=json.dumps(conditions, sort_keys=True),
                            valid_from=valid_from, valid_to=valid_to, min_input_tokens=floor, synced_at=now, **step,
                        )  # fmt: skip


def override_rows(overrides: Mapping[str, PriceOverride], version: str, now: datetime, source: str = "override") -> Iterator[dict[str, Any]]:
    for name, ov in overrides.items():
        model, _, tier = name.partition("@")
        conditions: dict[str, Any] = {"gpu_hour": dict(ov.gpu)} if ov.gpu else {}
        if tier:
            conditions["service_tier"] = tier
        yield _row(
            price_id=override_price_id(name), version=version, source="gpu-hour" if ov.gpu else source, provider="*",
            model=model, match_rule=f"equals {model!r} (any case)", tier=tier or STANDARD,
            conditions=json.dumps(conditions, sort_keys=True), valid_from=BEGIN, valid_to=END, min_input_tokens=0,
            input_mtok=ov.input_per_mtok, output_mtok=ov.output_per_mtok, cache_read_mtok=ov.cache_read,
            cache_write_mtok=ov.cache_write, cache_write_1h_mtok=ov.cache_write_1h,
            web_search_kcount=ov.web_search_per_k, requests_kcount=None if ov.request_usd is None else ov.request_usd * 1000,
            synced_at=now,
        )  # fmt: skip


def insert_rows(store: Any, rows: list[dict[str, Any]], version: str) -> int:
    if not rows:
        return 0
    store.client.insert(
        store.table("prices"),
        [[r[c] for c in COLUMNS] for r in rows],
        column_names=list(COLUMNS),
        settings={"insert_deduplication_token": f"tokentrail-prices-{version}"},
    )
    return len(rows)


def has_version(store: Any, version: str) -> bool:
    return bool(store.rows(f"SELECT count() FROM {store.table('prices')} WHERE version = {{v:String}}", {"v": version})[0][0])


def sync(store: Any, book: Any, now: datetime, *, force: bool = False) -> dict[str, int]:
    """Fill tokentrail.prices with the installed genai-prices version's rows and the overrides'
    (each version once). Returns rows inserted by version."""
    done: dict[str, int] = {}
    version = genai_version()
    if force or not has_version(store, version):
        done[version] = insert_rows(store, list(genai_rows(now)), version)
    if book.overrides:
        v = book.overrides_version
        if force or not has_version(store, v):
            done[v] = insert_rows(store, list(override_rows(book.overrides, v, now)), v)
    return done
