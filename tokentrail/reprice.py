"""Two ledgers: what spans were charged (frozen in spans.cost_usd) and what the same usage
costs under other prices, computed in ClickHouse by joining tokentrail.prices.

``tokentrail reprice --since 30d [--prices current|FILE] [--model M]``: the difference per
model, user and feature. Nothing is rewritten: the as-charged columns stay as they were; the
re-priced cost is a query (and the view ``spans_repriced`` at the current prices).

How a span finds its new price: by the key of the price that charged it (its ``price_id``
without the period: provider, model, tier), so a span keeps its model's match and its tier;
spans from before migration 5 (no price_id) by provider and model name. The target prices are
the rows valid at `now` of one version (``current``: the installed genai-prices and the
overrides), or the rows of a prices file (``[prices."<model>"]`` tables, matched by model name).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from .pricing.ids import genai_version
from .pricing.overrides import parse_overrides
from .pricing.table import has_version, override_rows, sync

__all__ = ["RepriceRow", "reprice", "reprice_sql", "target_prices_sql"]

# the key of the price that charged a span: its price_id without the period
_SPAN_KEY = """multiIf(
    startsWith(s.price_id, 'gp/'), replaceRegexpOne(s.price_id, '/[^/]+/([^/]+)$', '/\\\\1'),
    s.price_id != '', s.price_id,
    concat('gp/', s.provider, '/', if(s.response_model != '', s.response_model, s.request_model), '/',
           if(s.service_tier = '', 'standard', s.service_tier)))"""
# the model name a prices file is matched by
_SPAN_MODEL = """multiIf(
    startsWith(s.price_id, 'gp/'), extract(s.price_id, '^gp/[^/]+/(.+)/[^/]+/[^/]+$'),
    startsWith(s.price_id, 'ov/'), splitByChar('@', substring(s.price_id, 4))[1],
    if(s.response_model != '', s.response_model, s.request_model))"""
_STEP = "(min_input_tokens, input_mtok, output_mtok, cache_read_mtok, cache_write_mtok, cache_write_1h_mtok, reasoning_mtok, web_search_kcount, requests_kcount)"


def target_prices_sql(table: str, *, by_model: bool) -> str:
    """One row per price key: its long-context steps as a sorted array of tuples."""
    key = (
        "model"
        if by_model
        else "if(startsWith(price_id, 'gp/'), concat('gp/', provider, '/', model, '/', tier), price_id)"
    )
    return f"""SELECT {key} AS key, arraySort(x -> x.1, groupArray({_STEP})) AS steps
FROM {table} FINAL
WHERE version IN {{versions:Array(String)}} AND valid_from <= {{at:DateTime64(6, 'UTC')}} AND valid_to > {{at:DateTime64(6, 'UTC')}}
GROUP BY key"""


def _cost_sql() -> str:
    """The re-priced cost of one span from its step `st`: genai-prices' leaf counts (a cache
    part is taken out of the input only when it has a price of its own), exact in Decimal,
    rounded half-even to the nano-dollar like the as-charged cost."""
    p = lambda i: f"tupleElement(_price_step, {i})"  # noqa: E731
    cr = f"if(isNull({p(4)}), 0, toInt64(s.cache_read_tokens))"
    cw1h = f"if(isNull({p(6)}), 0, toInt64(least(s.cache_write_1h_tokens, s.cache_write_tokens)))"
    cw = f"if(isNull({p(5)}), 0, toInt64(s.cache_write_tokens) - {cw1h})"
    rs = f"if(isNull({p(7)}), 0, toInt64(s.reasoning_tokens))"
    inp = f"greatest(toInt64(s.input_tokens) - {cr} - {cw} - {cw1h}, 0)"
    out = f"greatest(toInt64(s.output_tokens) - {rs}, 0)"
    z = "toDecimal128(0, 12)"
    tokens = " + ".join(
        f"ifNull({p(i)}, {z}) * {n}" for i, n in ((2, inp), (3, out), (4, cr), (5, cw), (6, cw1h), (7, rs))
    )
    fees = f"(ifNull({p(8)}, {z}) * toInt64(s.web_search_requests) + ifNull({p(9)}, {z})) * 1000"
    return f"""CAST(roundBankers(toDecimal128({tokens} + {fees}, 18) / 1000000, 9) AS Decimal(18, 9))"""


def reprice_sql(spans: str, prices: str, *, by_model: bool, where: str = "1") -> str:
    """Per span: the as-charged cost and the re-priced one (NULL when no target price)."""
    key = _SPAN_MODEL if by_model else _SPAN_KEY
    return f"""SELECT s.*, arrayLast(x -> x.1 <= s.input_tokens, p.steps) AS _price_step,
    if(empty(p.steps), NULL, {_cost_sql()}) AS repriced_cost_usd
FROM (SELECT *, {key} AS _price_key FROM {spans} AS s WHERE s.operation != '' AND s.cost_status != 'no_usage' AND ({where})) AS s
LEFT JOIN ({target_prices_sql(prices, by_model=by_model)}) AS p ON p.key = s._price_key
SETTINGS join_use_nulls = 0"""


@dataclass(frozen=True)
class RepriceRow:
    group: str
    spans: int
    charged_usd: Decimal
    repriced_usd: Decimal
    unpriced: int  # spans the target prices have no price for (left out of both sums)

    @property
    def difference_usd(self) -> Decimal:
        return self.repriced_usd - self.charged_usd


GROUPS = {"model": "if(response_model != '', response_model, request_model)", "user": "user_id", "feature": "feature"}


def file_version(path: Path) -> str:
    return f"file {hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"


def prepare(store: Any, book: Any, prices: str, now: datetime) -> tuple[list[str], bool]:
    """(the versions to re-price with, whether they are matched by model name)."""
    sync(store, book, now)
    if prices == "current":
        versions = [genai_version()] + ([book.overrides_version] if book.overrides else [])
        return versions, False
    path = Path(prices).expanduser()
    overrides = parse_overrides(path)  # ConfigError names the field
    version = file_version(path)
    if not has_version(store, version):
        rows = list(override_rows(overrides, version, now, source="file"))
        from .pricing.table import _insert

        _insert(store, rows, version)
    return [version], True


def reprice(
    store: Any, book: Any, *, since: datetime, until: datetime, now: datetime, prices: str = "current",
    model: str | None = None, by: str = "model",
) -> list[RepriceRow]:  # fmt: skip
    versions, by_model = prepare(store, book, prices, now)
    where = "s.timestamp >= {since:DateTime64(6, 'UTC')} AND s.timestamp < {until:DateTime64(6, 'UTC')}"
    if model:
        where += " AND (s.request_model = {model:String} OR s.response_model = {model:String})"
    inner = reprice_sql(store.table("spans"), store.table("prices"), by_model=by_model, where=where)
    sql = f"""SELECT {GROUPS[by]} AS g, count() AS n,
    sumIf(ifNull(cost_usd, 0), repriced_cost_usd IS NOT NULL) AS charged,
    sumIf(ifNull(repriced_cost_usd, 0), repriced_cost_usd IS NOT NULL) AS repriced,
    countIf(repriced_cost_usd IS NULL) AS unpriced
FROM ({inner}) GROUP BY g ORDER BY repriced - charged DESC, g"""
    params = {"versions": versions, "at": now, "since": since, "until": until, "model": model or ""}
    return [
        RepriceRow(str(g), int(n), Decimal(c), Decimal(r), int(u)) for g, n, c, r, u in store.rows(sql, params)
    ]


def create_view(store: Any, book: Any, now: datetime) -> None:
    """``spans_repriced``: every model-call span with ``repriced_cost_usd`` at the current prices
    (made again by ``tokentrail prices sync`` when the prices change)."""
    versions = [genai_version()] + ([book.overrides_version] if book.overrides else [])
    inner = reprice_sql(store.table("spans"), store.table("prices"), by_model=False)
    at = now.strftime("%Y-%m-%d %H:%M:%S")
    vs = "[" + ", ".join("'" + v.replace("'", "\\'") + "'" for v in versions) + "]"
    inner = inner.replace("{versions:Array(String)}", vs).replace("{at:DateTime64(6, 'UTC')}", f"toDateTime64('{at}', 6, 'UTC')")
    store.client.command(f"CREATE OR REPLACE VIEW {store.table('spans_repriced')} AS {inner}")
