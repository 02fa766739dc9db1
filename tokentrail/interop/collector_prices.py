"""Pricing the Collector's rows in SQL from `tokentrail.prices` (migration 5), at each span's time.

The price table (pricing/table.py, the prices issue's; read here, never written but through its
own `sync`) holds every price effective-dated: a row per provider, model, tier, period
[valid_from, valid_to) and long-context step (min_input_tokens). A span is priced in two steps:

1. Its model name -> a price key (provider, model), as the in-process PriceBook does it: an
   override of the name first, then genai-prices' match for it, for the response model, then
   for the requested one. genai-prices' match rules are kept in the table as text
   (`match_rule`: "starts with 'claude-3-5-haiku' or equals 'x'"): their `equals` names and
   `starts with` prefixes (longest first) are read with extractAll; a rule joined with `and`,
   and `contains` / `matches` / `ends with` clauses, are not evaluated in SQL (such a name is
   matched by its model id only). Among providers, the span's own wins, else genai-prices'
   provider order (given at attach time).
2. The key's rows -> the row valid at the span's `Timestamp` whose step fits its input tokens;
   the cost is genai-prices' arithmetic (plan.py: a cache read, cache write or reasoning token
   without a price of its own is billed at its parent's price), exact in Decimal(76, 24),
   rounded half-even to the nano-dollar as the PriceBook rounds.

Why joins in the view: they price every span in the server, as it arrives, from the one
price table, with nothing else to keep in step. Their right sides are grouped per key (one row
per name, one per price key, periods in an array), a few thousand rows, built once per inserted
block: the Collector inserts in batches, so that is per batch, not per span. Measured
(bench/interop_collector_view.py, 1,000-span batches, a fifth model calls, paired runs at load
~4.5 on the shared 2-core machine): the view adds ~420-480 ms a batch against ~175-180 ms for
the earlier view on today's prices (otel_prices): dated prices cost ~2.5x. Not the key lookup
(aliasing every lookup once, merging the override join into the name join: no change) nor
FINAL (none: no change); not found in the time box. Tried and not kept: Join-engine lookup tables read
with joinGet (no right side rebuilt per block, but not faster: ~2.2-2.5 s a batch at load 14-17,
when this view took ~1.3-1.9 s; and three more tables to keep in step); a range_hashed dictionary (the natural fit for dated
rows) needs a source that reaches the server (a CLICKHOUSE source with host and credentials),
which an embedded or clickhouse-local store has not.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["periods_join", "price_columns", "resolved_from"]

_TUPLE = ("valid_from, valid_to, min_input_tokens, input_mtok, output_mtok, cache_read_mtok, cache_write_mtok, "
          "reasoning_mtok, requests_kcount, price_id, version")  # fmt: skip


def _q(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _array(values: Sequence[str]) -> str:
    return "[" + ", ".join(_q(v) for v in values) + "]"


def _standard(db: str, versions: Sequence[str]) -> str:
    return f"{db}.prices FINAL WHERE version IN {_array(versions or [''])} AND tier = 'standard'"


def _literals(kind: str) -> str:
    return rf"if(position(match_rule, ' and ') = 0, extractAll(match_rule, '{kind} \'([^\']+)\''), [])"


def resolved_from(inner: str, db: str, versions: Sequence[str], provider_order: Sequence[str]) -> str:
    """`inner` (a SELECT with columns join_model, join_request, prov) with the price key of
    each row added: key_provider, key_model ('' and '' when nothing matches)."""
    table = _standard(db, versions)
    order = _array(provider_order)
    # candidates (provider, model) sorted: genai-prices' provider order, unknown providers last
    sort = f"arraySort(c -> (indexOf({order}, c.1) = 0, indexOf({order}, c.1), c.1, c.2), groupUniqArray((provider, model)))"
    names = (
        f"SELECT lit, {sort} AS cands FROM (SELECT provider, model, arrayJoin(arrayPushFront({_literals('equals')}, model)) AS lit "
        f"FROM {table} AND provider != '*') GROUP BY lit"
    )
    overrides = f"SELECT DISTINCT model AS lit FROM {table} AND provider = '*'"
    prefixes = (
        f"(SELECT arraySort(x -> (-length(x.1), indexOf({order}, x.2) = 0, indexOf({order}, x.2), x.2, x.3), "
        f"groupUniqArray((pfx, provider, model))) FROM (SELECT provider, model, arrayJoin({_literals('starts with')}) AS pfx "
        f"FROM {table} AND provider != '*'))"
    )

    def pick(cands: str, name: str) -> str:
        by_name = f"if(notEmpty({cands}), if(arrayExists(c -> c.1 = prov, {cands}), arrayFirst(c -> c.1 = prov, {cands}), {cands}[1]), ('', ''))"
        own = f"arrayFirst(x -> startsWith({name}, x.1) AND x.2 = prov, pfx)"
        anyp = f"arrayFirst(x -> startsWith({name}, x.1), pfx)"
        by_prefix = f"if({own}.1 != '', ({own}.2, {own}.3), ({anyp}.2, {anyp}.3))"
        return f"if({name} = '', ('', ''), if(notEmpty({cands}), {by_name}, {by_prefix}))"

    return f"""
SELECT t.*,
    {prefixes} AS pfx,
    multiIf(ovr.lit != '', ('*', t.join_model), {pick('er.cands', 't.join_model')}.1 != '', {pick('er.cands', 't.join_model')},
            ovq.lit != '', ('*', t.join_request), {pick('eq.cands', 't.join_request')}) AS price_key,
    price_key.1 AS key_provider, price_key.2 AS key_model
FROM ({inner}) AS t
LEFT JOIN ({names}) AS er ON er.lit = t.join_model
LEFT JOIN ({names}) AS eq ON eq.lit = t.join_request
LEFT JOIN ({overrides}) AS ovr ON ovr.lit = t.join_model
LEFT JOIN ({overrides}) AS ovq ON ovq.lit = t.join_request
"""


def periods_join(db: str, versions: Sequence[str]) -> str:
    """The right side keyed by price key: every period and step of it in one array."""
    return (
        f"LEFT JOIN (SELECT provider AS pp, model AS pm, groupArray(({_TUPLE})) AS periods FROM {_standard(db, versions)} "
        f"GROUP BY provider, model) AS p ON p.pp = r.key_provider AND p.pm = r.key_model"
    )


def price_columns() -> str:
    """Cost columns, from the usage columns input_tokens, output_tokens, cache_read_tokens,
    cache_write_tokens, reasoning_tokens, has_usage, ts6 (the span's time) and p.periods (see the module docstring)."""

    def d(x: str) -> str:
        return f"toDecimal256(ifNull({x}, 0), 24)"

    fit = "arrayFilter(x -> x.1 <= ts6 AND ts6 < x.2 AND x.3 <= input_tokens, p.periods)"
    return f"""
    arrayReverseSort(x -> x.3, {fit}) AS fits,
    notEmpty(fits) AS priced,
    fits[1] AS pr,
    ({d('pr.4')} * (input_tokens - cache_read_tokens - cache_write_tokens)
        + {d('coalesce(pr.6, pr.4)')} * cache_read_tokens + {d('coalesce(pr.7, pr.4)')} * cache_write_tokens) / 1000000 AS x_in,
    ({d('pr.5')} * (output_tokens - reasoning_tokens) + {d('coalesce(pr.8, pr.5)')} * reasoning_tokens) / 1000000 AS x_out,
    {d('pr.9')} / 1000 AS x_fees,
    if(has_usage AND priced, toDecimal64(roundBankers(x_in, 9), 9), NULL) AS input_cost_usd,
    if(has_usage AND priced, toDecimal64(roundBankers(x_out, 9), 9), NULL) AS output_cost_usd,
    if(has_usage AND priced, toDecimal64(roundBankers(x_in + x_out + x_fees, 9), 9), NULL) AS cost_usd,
    if(has_usage AND priced AND x_fees != 0, toDecimal64(roundBankers(x_fees, 9), 9), NULL) AS fees_usd,
    if(priced, pr.10, '') AS price_id,
    if(priced, pr.11, '') AS price_version,
    multiIf(NOT has_usage, 'no_usage', NOT priced, 'unpriced', key_provider = '*', 'override', 'priced') AS cost_status"""
