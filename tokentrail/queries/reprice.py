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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..pricing.ids import genai_version
from ..pricing.overrides import parse_overrides
from ..pricing.table import has_version, insert_rows, override_rows, sync

__all__ = [
    "RepriceRow",
    "aggregate_sql",
    "create_view",
    "priced_sql",
    "reprice",
    "reprice_sql",
    "target_prices_sql",
    "usd_sql",
]

# How a span finds its target price: by its price_id (the right side maps every price id ever
# stored to the key of its price: provider, model, tier), or, before migration 5, by provider,
# model name and tier ('legacy/...'); with a prices file by model name.
_SPAN_JOIN = """if(s.price_id != '', toString(s.price_id), concat('legacy/', s.provider, '/',
    if(s.response_model != '', s.response_model, s.request_model), '/', if(s.service_tier = '', 'standard', s.service_tier)))"""
_KEY = "if(startsWith(price_id, 'gp/'), concat('gp/', provider, '/', model, '/', tier), price_id)"
_PRICES = (
    "input_mtok",
    "output_mtok",
    "cache_read_mtok",
    "cache_write_mtok",
    "cache_write_1h_mtok",
    "reasoning_mtok",
    "web_search_kcount",
    "requests_kcount",
)
# the span columns a re-pricing reads
_NEEDED = (
    "timestamp", "span_id", "operation", "provider", "request_model", "response_model", "user_id", "feature", "service_tier",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "reasoning_tokens",
    "web_search_requests", "cost_usd", "cost_status", "price_id",
)  # fmt: skip


def _steps_sql(table: str, key: str, window: str, *, periods: bool) -> str:
    """One row per (price key[, period], long-context step) with the step's input-token range
    [lo, hi) and its prices (0 plus a flag where a price is NULL: billed at its parent's)."""
    steps = f"arraySort(x -> x.1, groupArray(tuple(min_input_tokens, {', '.join(_PRICES)})))"
    period = "valid_from, valid_to, " if periods else ""
    cols = ", ".join(
        f"ifNull(tupleElement(steps[i], {k + 2}), toDecimal128(0, 12)) AS {name}, isNotNull(tupleElement(steps[i], {k + 2})) AS has_{name}"
        for k, name in enumerate(_PRICES)
    )
    return f"""SELECT key, {period}steps[i].1 AS lo, if(i < length(steps), steps[i + 1].1, toUInt64(18446744073709551615)) AS hi, {cols}
    FROM (SELECT {key} AS key, {period}{steps} AS steps FROM {table} FINAL WHERE {window} GROUP BY key{", valid_from, valid_to" if periods else ""})
    ARRAY JOIN arrayEnumerate(steps) AS i"""


def target_prices_sql(table: str, *, by_model: bool) -> str:
    """The right side of the join, small: one row per (join key, long-context step) of the
    prices of the given versions valid at `at`."""
    window = "version IN {versions:Array(String)} AND valid_from <= {at:DateTime64(6, 'UTC')} AND valid_to > {at:DateTime64(6, 'UTC')}"
    target_key = "model" if by_model else _KEY
    # every stored price id -> the key of its price; legacy spans by provider/model/tier
    ids = f"SELECT DISTINCT price_id AS jk, {target_key} AS key FROM {table}"
    legacy = (
        f"SELECT DISTINCT concat('legacy/', provider, '/', model, '/', tier) AS jk, {target_key} AS key FROM {table} "
        "WHERE startsWith(price_id, 'gp/')"
    )
    return f"""SELECT m.jk AS jk, t.lo AS lo, t.hi AS hi, {", ".join(f"t.{n} AS {n}, t.has_{n} AS has_{n}" for n in _PRICES)}
FROM ({ids} UNION ALL {legacy}) AS m
INNER JOIN ({_steps_sql(table, target_key, window, periods=False)}) AS t ON t.key = m.key"""


def priced_sql(c: Mapping[str, str], p: str = "p.") -> str:
    """What counts cost at one price row, in USD x 1e6 (Decimal, exact): genai-prices' leaf
    counts (a cache part comes out of the input only when it has a price of its own, as
    reasoning out of the output). `c` maps n (calls), inp, out, cr, cw, cw1h, rs, ws to Int64
    SQL. A call's cost is linear in its counts, so this on sums is the sum of the calls' costs."""
    return (
        f"{p}input_mtok * ({c['inp']} - if({p}has_cache_read_mtok, {c['cr']}, 0) - if({p}has_cache_write_mtok, {c['cw']}, "
        f"if({p}has_cache_write_1h_mtok, {c['cw1h']}, 0))) + {p}output_mtok * ({c['out']} - if({p}has_reasoning_mtok, {c['rs']}, 0)) "
        f"+ if({p}has_cache_read_mtok, {p}cache_read_mtok * {c['cr']}, 0) "
        f"+ if({p}has_cache_write_mtok, {p}cache_write_mtok * ({c['cw']} - if({p}has_cache_write_1h_mtok, {c['cw1h']}, 0)), 0) "
        f"+ if({p}has_cache_write_1h_mtok, {p}cache_write_1h_mtok * {c['cw1h']}, 0) "
        f"+ if({p}has_reasoning_mtok, {p}reasoning_mtok * {c['rs']}, 0) "
        f"+ ({p}web_search_kcount * {c['ws']} + {p}requests_kcount * {c['n']}) * 1000"
    )


SUMS = {k: f"toInt64(a.{k})" for k in ("n", "inp", "out", "cr", "cw", "cw1h", "rs", "ws")}
ONE_SPAN = {
    "n": "1", "inp": "toInt64(s.input_tokens)", "out": "toInt64(s.output_tokens)", "cr": "toInt64(s.cache_read_tokens)",
    "cw": "toInt64(s.cache_write_tokens)", "cw1h": "toInt64(least(s.cache_write_1h_tokens, s.cache_write_tokens))",
    "rs": "toInt64(s.reasoning_tokens)", "ws": "toInt64(s.web_search_requests)",
}  # fmt: skip


def usd_sql(micro: str) -> str:
    """USD x 1e6 (a priced_sql value, or a sum of them) as USD, rounded half-even to the
    nano-dollar once."""
    return f"CAST(roundBankers({micro} / 1000000, 9) AS Decimal(38, 9))"


def _cost_sql() -> str:
    """The re-priced cost of one span (the view's), rounded like the as-charged cost."""
    return f"CAST(roundBankers(toDecimal128({priced_sql(ONE_SPAN, 'p.')}, 12) / 1000000, 9) AS Decimal(18, 9))"


def reprice_sql(
    spans: str, prices: str, *, by_model: bool, where: str = "1", columns: str | None = None
) -> str:
    """Per model-call span: its columns and the re-priced cost (NULL when no target price):
    the row-level answer, and the view's."""
    cols = columns or ", ".join(_NEEDED)
    return f"""SELECT s.*, if(p.jk = '', NULL, {_cost_sql()}) AS repriced_cost_usd
FROM (SELECT {cols}, {_SPAN_JOIN} AS _price_key FROM {spans} AS s WHERE s.operation != '' AND s.cost_status != 'no_usage' AND ({where})) AS s
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


GROUPS = {
    "model": "if(response_model != '', response_model, request_model)",
    "user": "user_id",
    "feature": "feature",
}
# the columns each grouping reads (grouped by first: an expression over them is computed on the sums)
GROUP_COLUMNS = {
    GROUPS["model"]: "response_model, request_model",
    "user_id": "user_id",
    "feature": "feature",
}


def file_version(path: Path) -> str:
    return f"file {hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"


def prepare(store: Any, book: Any, prices: str, now: datetime) -> tuple[list[str], bool]:
    """(the versions to re-price with, whether they are matched by model name)."""
    sync(store, book, now)
    if prices == "current":
        return current_versions(book), False
    path = Path(prices).expanduser()
    overrides = parse_overrides(path)  # ConfigError names the field
    version = file_version(path)
    if not has_version(store, version):
        rows = list(override_rows(overrides, version, now, source="file"))
        insert_rows(store, rows, version)
    return [version], True


def aggregate_sql(spans: str, prices: str, *, by_model: bool, group: str, where: str) -> str:
    """The report's query, aggregating first: spans are summed by (group, price, long-context
    step) on the big table (a GROUP BY of low-cardinality columns), then each sum is priced on
    the small one (priced_sql). The total is exact: Σ price x Σ counts, rounded once.
    Parameters: versions, at, floors (every min_input_tokens of those versions) and where's."""
    legacy = """concat('legacy/', provider, '/', if(response_model != '', response_model, request_model), '/',
        if(service_tier = '', 'standard', service_tier))"""
    sums = (
        "count() AS n, sum(ifNull(cost_usd, toDecimal64(0, 9))) AS charged, sum(input_tokens) AS inp, sum(output_tokens) AS out, "
        "sum(cache_read_tokens) AS cr, sum(cache_write_tokens) AS cw, sum(least(cache_write_1h_tokens, cache_write_tokens)) AS cw1h, "
        "sum(reasoning_tokens) AS rs, sum(web_search_requests) AS ws"
    )

    def part(cond: str, key: str, keys: str) -> str:
        return f"""SELECT {group} AS g, {key} AS jk, floor, n, charged, inp, out, cr, cw, cw1h, rs, ws
    FROM (SELECT {keys}, roundDown(input_tokens, {{floors:Array(UInt64)}}) AS floor, {sums}
          FROM {spans} AS s WHERE operation != '' AND cost_status != 'no_usage' AND ({cond}) AND ({where})
          GROUP BY {keys}, floor)"""

    group_cols = GROUP_COLUMNS[group]
    # spans with a price id (nearly all) are grouped by it alone; older ones by what names their price
    priced = part("price_id != ''", "toString(price_id)", f"{group_cols}, price_id")
    older = part(
        "price_id = ''",
        legacy,
        f"{group_cols}, provider, response_model, request_model, service_tier",
    )
    return f"""SELECT a.g AS g, sum(a.n) AS n,
    sumIf(a.charged, p.jk != '') AS charged,
    {usd_sql(f"sumIf(toDecimal128({priced_sql(SUMS)}, 12), p.jk != '')")} AS repriced,
    sumIf(a.n, p.jk = '') AS unpriced
FROM ({priced} UNION ALL {older}) AS a
LEFT JOIN ({target_prices_sql(prices, by_model=by_model)}) AS p ON p.jk = a.jk
WHERE p.jk = '' OR (a.floor >= p.lo AND a.floor < p.hi)
GROUP BY g ORDER BY repriced - charged DESC, g
SETTINGS join_use_nulls = 0"""


def floors(store: Any, versions: list[str]) -> list[int]:
    """Every long-context step start of these versions (0 included)."""
    sql = f"SELECT DISTINCT min_input_tokens FROM {store.table('prices')} WHERE version IN {{versions:Array(String)}}"
    return sorted({0, *(int(r[0]) for r in store.rows(sql, {"versions": versions}))})


def reprice(
    store: Any, book: Any, *, since: datetime, until: datetime, now: datetime, prices: str = "current",
    model: str | None = None, by: str = "model",
) -> list[RepriceRow]:  # fmt: skip
    versions, by_model = prepare(store, book, prices, now)
    params: dict[str, Any] = {
        "versions": versions,
        "at": now,
        "since": since,
        "until": until,
        "model": model or "",
    }
    params["floors"] = floors(store, versions)
    where = "timestamp >= {since:DateTime64(6, 'UTC')} AND timestamp < {until:DateTime64(6, 'UTC')}"
    if model:
        where += " AND (request_model = {model:String} OR response_model = {model:String})"
    sql = aggregate_sql(
        store.table("spans"),
        store.table("prices"),
        by_model=by_model,
        group=GROUPS[by],
        where=where,
    )
    return [
        RepriceRow(str(g), int(n), Decimal(c), Decimal(r), int(u))
        for g, n, c, r, u in store.rows(sql, params)
    ]


def create_view(store: Any, book: Any, now: datetime) -> None:
    """``spans_repriced``: every model-call span with ``repriced_cost_usd`` at the current prices
    (made again by ``tokentrail prices sync`` when the prices change)."""
    versions = current_versions(book)
    inner = reprice_sql(
        store.table("spans"), store.table("prices"), by_model=False, columns="*"
    ).replace("SELECT s.*,", "SELECT s.* EXCEPT (_price_key),")
    at = now.strftime("%Y-%m-%d %H:%M:%S")
    vs = "[" + ", ".join("'" + v.replace("'", "\\'") + "'" for v in versions) + "]"
    inner = inner.replace("{versions:Array(String)}", vs).replace(
        "{at:DateTime64(6, 'UTC')}", f"toDateTime64('{at}', 6, 'UTC')"
    )
    store.client.command(f"CREATE OR REPLACE VIEW {store.table('spans_repriced')} AS {inner}")


# -- the same traffic on another model (the Efficiency page) ----------------------------------
_SYNCED: set[tuple[str, tuple[str, ...]]] = set()


def current_versions(book: Any) -> list[str]:
    """The versions `current` prices are: the installed genai-prices and the overrides."""
    return [genai_version()] + ([book.overrides_version] if book.overrides else [])


def ensure_prices(store: Any, book: Any, now: datetime) -> list[str]:
    """The current versions, synced into tokentrail.prices (checked once per process and store)."""
    versions = current_versions(book)
    key = (f"{store.settings.public_store}/{store.settings.database}", tuple(versions))
    if key not in _SYNCED:
        sync(store, book, now)
        _SYNCED.add(key)
    return versions


def what_if_sql(src: str, prices: str, floor: str, key: Mapping[str, str]) -> str:
    """Facts (rollup or raw rows: spans, cost_usd, token sums, has_cost, input_tier) summed by
    (request model, provider, known cost, day, long-context step), each sum priced at the
    target's row of that day and step: the rows of `key` (pricing.ids.price_key: columns ->
    their parameter names, read by the table's primary key) in {wi_versions}.
    Cache writes count as five-minute writes and web searches are not counted (the rollups
    hold neither split); the per-request fee is. Returns (request_model, provider, known,
    calls, actual, what_if, calls without a target price)."""
    window = " AND ".join(["version IN {wi_versions:Array(String)}", *(f"{c} = {{{param}:String}}" for c, param in key.items())])
    steps = _steps_sql(prices, _KEY, window, periods=True)
    sums = (
        "sum(spans) AS n, sum(cost_usd) AS actual, sum(input_tokens) AS inp, sum(output_tokens) AS out, "
        "sum(cache_read_tokens) AS cr, sum(cache_write_tokens) AS cw, toUInt64(0) AS cw1h, sum(reasoning_tokens) AS rs, "
        "toUInt64(0) AS ws"
    )
    return f"""SELECT a.request_model, a.provider, a.known, sum(a.n), sum(a.actual),
    {usd_sql(f"sumIf(toDecimal128({priced_sql(SUMS)}, 12), p.one = 1)")}, sumIf(a.n, p.one = 0)
FROM (SELECT request_model, provider, has_cost AS known, toDateTime(toDate(timestamp), 'UTC') AS t, {floor} AS floor, 1 AS one, {sums}
      FROM {src} GROUP BY request_model, provider, known, t, floor) AS a
LEFT JOIN (SELECT 1 AS one, * FROM ({steps})) AS p ON p.one = a.one
WHERE p.one = 0 OR (a.t >= p.valid_from AND a.t < p.valid_to AND a.floor >= p.lo AND a.floor < p.hi)
GROUP BY a.request_model, a.provider, a.known
SETTINGS join_use_nulls = 0"""
