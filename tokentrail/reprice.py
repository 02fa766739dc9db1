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

# How a span finds its target price: by its price_id (the right side maps every price id ever
# stored to the key of its price: provider, model, tier), or, before migration 5, by provider,
# model name and tier ('legacy/...'); with a prices file by model name.
_SPAN_JOIN = """if(s.price_id != '', toString(s.price_id), concat('legacy/', s.provider, '/',
    if(s.response_model != '', s.response_model, s.request_model), '/', if(s.service_tier = '', 'standard', s.service_tier)))"""
_KEY = "if(startsWith(price_id, 'gp/'), concat('gp/', provider, '/', model, '/', tier), price_id)"
_PRICES = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "cache_write_1h_mtok", "reasoning_mtok", "web_search_kcount", "requests_kcount")
# the span columns a re-pricing reads
_NEEDED = (
    "timestamp", "span_id", "operation", "provider", "request_model", "response_model", "user_id", "feature", "service_tier",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "reasoning_tokens",
    "web_search_requests", "cost_usd", "cost_status", "price_id",
)  # fmt: skip


def target_prices_sql(table: str, *, by_model: bool) -> str:
    """The right side of the join, small: one row per (join key, long-context step) with the
    step's input-token range [lo, hi) and its prices (0 plus a flag where a price is NULL)."""
    steps = f"arraySort(x -> x.1, groupArray(tuple(min_input_tokens, {', '.join(_PRICES)})))"
    window = "version IN {versions:Array(String)} AND valid_from <= {at:DateTime64(6, 'UTC')} AND valid_to > {at:DateTime64(6, 'UTC')}"
    target_key = "model" if by_model else _KEY
    cols = ", ".join(
        f"ifNull(tupleElement(steps[i], {k + 2}), toDecimal128(0, 12)) AS {name}, isNotNull(tupleElement(steps[i], {k + 2})) AS has_{name}"
        for k, name in enumerate(_PRICES)
    )
    # every stored price id -> the key of its price; legacy spans by provider/model/tier
    ids = f"SELECT DISTINCT price_id AS jk, {'model' if by_model else _KEY} AS key FROM {table}"
    legacy = (
        f"SELECT DISTINCT concat('legacy/', provider, '/', model, '/', tier) AS jk, {'model' if by_model else _KEY} AS key FROM {table} "
        "WHERE startsWith(price_id, 'gp/')"
    )
    return f"""SELECT m.jk AS jk, t.lo AS lo, t.hi AS hi, {', '.join(f't.{n} AS {n}, t.has_{n} AS has_{n}' for n in _PRICES)}
FROM ({ids} UNION ALL {legacy}) AS m
INNER JOIN (
    SELECT key, steps[i].1 AS lo, if(i < length(steps), steps[i + 1].1, toUInt64(18446744073709551615)) AS hi, {cols}
    FROM (SELECT {target_key} AS key, {steps} AS steps FROM {table} FINAL WHERE {window} GROUP BY key)
    ARRAY JOIN arrayEnumerate(steps) AS i
) AS t ON t.key = m.key"""


def _cost_sql() -> str:
    """The re-priced cost of one span: genai-prices' leaf counts (a cache part is taken out of
    the input only when it has a price of its own), exact in Decimal, rounded half-even to the
    nano-dollar like the as-charged cost."""
    cr = "if(p.has_cache_read_mtok, toInt64(s.cache_read_tokens), 0)"
    cw1h = "if(p.has_cache_write_1h_mtok, toInt64(least(s.cache_write_1h_tokens, s.cache_write_tokens)), 0)"
    cw = f"if(p.has_cache_write_mtok, toInt64(s.cache_write_tokens) - {cw1h}, 0)"
    rs = "if(p.has_reasoning_mtok, toInt64(s.reasoning_tokens), 0)"
    inp = f"greatest(toInt64(s.input_tokens) - {cr} - {cw} - {cw1h}, 0)"
    out = f"greatest(toInt64(s.output_tokens) - {rs}, 0)"
    tokens = " + ".join(
        f"p.{name} * {n}"
        for name, n in (("input_mtok", inp), ("output_mtok", out), ("cache_read_mtok", cr), ("cache_write_mtok", cw),
                        ("cache_write_1h_mtok", cw1h), ("reasoning_mtok", rs))
    )  # fmt: skip
    fees = "(p.web_search_kcount * toInt64(s.web_search_requests) + p.requests_kcount) * 1000"
    return f"CAST(roundBankers(toDecimal128({tokens} + {fees}, 18) / 1000000, 9) AS Decimal(18, 9))"


def reprice_sql(spans: str, prices: str, *, by_model: bool, where: str = "1", columns: str | None = None) -> str:
    """Per model-call span: its columns and the re-priced cost (NULL when no target price)."""
    cols = columns or ", ".join(_NEEDED)
    key = _SPAN_JOIN
    return f"""SELECT s.*, if(p.jk = '', NULL, {_cost_sql()}) AS repriced_cost_usd
FROM (SELECT {cols}, {key} AS _price_key FROM {spans} AS s WHERE s.operation != '' AND s.cost_status != 'no_usage' AND ({where})) AS s
LEFT JOIN ({target_prices_sql(prices, by_model=by_model)}) AS p ON p.jk = s._price_key
WHERE p.jk = '' OR (s.input_tokens >= p.lo AND s.input_tokens < p.hi)
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
# the columns each grouping reads (grouped by first: an expression over them is computed on the sums)
GROUP_COLUMNS = {GROUPS["model"]: "response_model, request_model", "user_id": "user_id", "feature": "feature"}


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


def aggregate_sql(spans: str, prices: str, *, by_model: bool, group: str, floors: list[int], where: str) -> str:
    """The report's query, aggregating first: spans are summed by (group, price, long-context
    step) on the big table (a GROUP BY of low-cardinality columns), then each sum is priced on
    the small one. A span's cost is linear in its counts (input includes its cache parts,
    output its reasoning), so the total is exact: Σ price x Σ counts, rounded once."""
    floor_list = "[" + ", ".join(str(int(f)) for f in sorted(set(floors) | {0})) + "]"
    legacy = """concat('legacy/', provider, '/', if(response_model != '', response_model, request_model), '/',
        if(service_tier = '', 'standard', service_tier))"""
    sums = (
        "count() AS n, sum(ifNull(cost_usd, toDecimal64(0, 9))) AS charged, sum(input_tokens) AS inp, sum(output_tokens) AS out, "
        "sum(cache_read_tokens) AS cr, sum(cache_write_tokens) AS cw, sum(least(cache_write_1h_tokens, cache_write_tokens)) AS cw1h, "
        "sum(reasoning_tokens) AS rs, sum(web_search_requests) AS ws"
    )
    p = "p."
    tokens = (
        f"{p}input_mtok * (toInt64(a.inp) - if({p}has_cache_read_mtok, toInt64(a.cr), 0) - if({p}has_cache_write_mtok, toInt64(a.cw), "
        f"if({p}has_cache_write_1h_mtok, toInt64(a.cw1h), 0))) + {p}output_mtok * (toInt64(a.out) - if({p}has_reasoning_mtok, toInt64(a.rs), 0)) "
        f"+ if({p}has_cache_read_mtok, {p}cache_read_mtok * toInt64(a.cr), 0) "
        f"+ if({p}has_cache_write_mtok, {p}cache_write_mtok * (toInt64(a.cw) - if({p}has_cache_write_1h_mtok, toInt64(a.cw1h), 0)), 0) "
        f"+ if({p}has_cache_write_1h_mtok, {p}cache_write_1h_mtok * toInt64(a.cw1h), 0) "
        f"+ if({p}has_reasoning_mtok, {p}reasoning_mtok * toInt64(a.rs), 0) "
        f"+ ({p}web_search_kcount * toInt64(a.ws) + {p}requests_kcount * toInt64(a.n)) * 1000"
    )
    def part(cond: str, key: str, keys: str) -> str:
        return f"""SELECT {group} AS g, {key} AS jk, floor, n, charged, inp, out, cr, cw, cw1h, rs, ws
    FROM (SELECT {keys}, roundDown(input_tokens, {floor_list}) AS floor, {sums}
          FROM {spans} AS s WHERE operation != '' AND cost_status != 'no_usage' AND ({cond}) AND ({where})
          GROUP BY {keys}, floor)"""

    group_cols = GROUP_COLUMNS[group]
    # spans with a price id (nearly all) are grouped by it alone; older ones by what names their price
    priced = part("price_id != ''", "toString(price_id)", f"{group_cols}, price_id")
    older = part("price_id = ''", legacy, f"{group_cols}, provider, response_model, request_model, service_tier")
    return f"""SELECT a.g AS g, sum(a.n) AS n,
    sumIf(a.charged, p.jk != '') AS charged,
    CAST(roundBankers(sumIf(toDecimal128({tokens}, 12), p.jk != '') / 1000000, 9) AS Decimal(38, 9)) AS repriced,
    sumIf(a.n, p.jk = '') AS unpriced
FROM ({priced} UNION ALL {older}) AS a
LEFT JOIN ({target_prices_sql(prices, by_model=by_model)}) AS p ON p.jk = a.jk
WHERE p.jk = '' OR (a.floor >= p.lo AND a.floor < p.hi)
GROUP BY g ORDER BY repriced - charged DESC, g
SETTINGS join_use_nulls = 0"""


def reprice(
    store: Any, book: Any, *, since: datetime, until: datetime, now: datetime, prices: str = "current",
    model: str | None = None, by: str = "model",
) -> list[RepriceRow]:  # fmt: skip
    versions, by_model = prepare(store, book, prices, now)
    params: dict[str, Any] = {"versions": versions, "at": now, "since": since, "until": until, "model": model or ""}
    floors = [
        int(r[0])
        for r in store.rows(
            f"SELECT DISTINCT min_input_tokens FROM {store.table('prices')} WHERE version IN {{versions:Array(String)}}", params
        )
    ]
    where = "timestamp >= {since:DateTime64(6, 'UTC')} AND timestamp < {until:DateTime64(6, 'UTC')}"
    if model:
        where += " AND (request_model = {model:String} OR response_model = {model:String})"
    sql = aggregate_sql(store.table("spans"), store.table("prices"), by_model=by_model, group=GROUPS[by], floors=floors, where=where)
    return [RepriceRow(str(g), int(n), Decimal(c), Decimal(r), int(u)) for g, n, c, r, u in store.rows(sql, params)]


def create_view(store: Any, book: Any, now: datetime) -> None:
    """``spans_repriced``: every model-call span with ``repriced_cost_usd`` at the current prices
    (made again by ``tokentrail prices sync`` when the prices change)."""
    versions = [genai_version()] + ([book.overrides_version] if book.overrides else [])
    inner = reprice_sql(store.table("spans"), store.table("prices"), by_model=False, columns="*").replace(
        "SELECT s.*,", "SELECT s.* EXCEPT (_price_key),"
    )
    at = now.strftime("%Y-%m-%d %H:%M:%S")
    vs = "[" + ", ".join("'" + v.replace("'", "\\'") + "'" for v in versions) + "]"
    inner = inner.replace("{versions:Array(String)}", vs).replace("{at:DateTime64(6, 'UTC')}", f"toDateTime64('{at}', 6, 'UTC')")
    store.client.command(f"CREATE OR REPLACE VIEW {store.table('spans_repriced')} AS {inner}")
