"""`tokentrail otel attach | backfill`: the OpenTelemetry Collector's `otel_traces` in the ledger.

The Collector's clickhouseexporter writes one row per span, attributes as
`SpanAttributes Map(LowCardinality(String), String)`. `attach` creates, on the user's
ClickHouse, a materialized view from that table into `tokentrail.spans`: the model-call spans
of OpenInference, OpenLLMetry and OTel genai instrumentations, usage normalised as
interop/normalise.py does in process (the same attribute names, generated from its tuples),
priced by a join on `otel_prices` (per-token prices that attach fills from tokentrail's
PriceBook). `backfill` inserts the same rows for spans already in otel_traces (not those the
view already copied).

Prices in SQL are today's PriceBook prices per model name: a span is priced at those, not at
its start time (the in-process processor prices at the start time), and a model first seen
after attach is unpriced (cost NULL, status 'unpriced') until attach or backfill runs again.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from importlib import resources
from string import Template
from typing import Any

from .. import clock
from ..errors import ConfigError
from ..usage import Usage
from . import normalise as nz

__all__ = ["attach", "backfill", "select_sql"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63})?$")
_N = 100_000  # tokens priced to derive per-token prices (below every long-context tier)
FAMILIES = (nz.OPENINFERENCE, nz.OPENLLMETRY, nz.OTEL_GENAI)


def _sql_file(name: str) -> str:
    return resources.files("tokentrail.store").joinpath("sql").joinpath(name).read_text()


def _q(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _first(keys: tuple[str, ...]) -> str:
    """The first non-empty attribute of `keys` (a string, '' when none)."""
    expr = "''"
    for key in reversed(keys):
        expr = f"if(a[{_q(key)}] != '', a[{_q(key)}], {expr})"
    return expr


def _count(keys: tuple[str, ...]) -> str:
    return f"toUInt64OrZero({_first(keys)})"


def _has(keys: tuple[str, ...]) -> str:
    return "(" + " OR ".join(f"mapContains(a, {_q(k)})" for k in keys) + ")"


def select_sql(source: str, db: str, project: str, where: str = "1") -> str:
    """The SELECT from the Collector's table to tokentrail.spans' columns."""
    oi_in, oi_out, oi_total = ("llm.token_count.prompt",), ("llm.token_count.completion",), ("llm.token_count.total",)
    oi_cr, oi_cw = ("llm.token_count.prompt_details.cache_read",), ("llm.token_count.prompt_details.cache_write",)
    oi_rs = ("llm.token_count.completion_details.reasoning",)
    ops = ", ".join(_q(o) for o in sorted(nz._MODEL_OPS))
    is_oi = "mapContains(a, 'openinference.span.kind')"

    def pick(oi: tuple[str, ...], other: tuple[str, ...]) -> str:
        return f"if({is_oi}, {_count(oi)}, {_count(other)})"

    return f"""
SELECT
    toDateTime64(Timestamp, 6, 'UTC') AS timestamp,
    Duration / 1e6 AS duration_ms,
    TraceId AS trace_id, SpanId AS span_id, ParentSpanId AS parent_span_id,
    SpanName AS name,
    multiIf(upper(a['openinference.span.kind']) = 'EMBEDDING' OR a['gen_ai.operation.name'] = 'embeddings'
            OR a['llm.request.type'] = 'embedding', 'embeddings',
            a['llm.request.type'] = 'completion' OR a['gen_ai.operation.name'] = 'text_completion', 'text_completion',
            'chat') AS operation,
    multiIf({is_oi}, 'openinference',
            arrayExists(k -> startsWith(k, 'traceloop.') OR startsWith(k, 'llm.usage.') OR k = 'llm.request.type', mapKeys(a)),
            'openllmetry', 'otel-genai') AS framework,
    ServiceName AS service_name,
    if(ResourceAttributes['tokentrail.project'] != '', ResourceAttributes['tokentrail.project'], {_q(project)}) AS project,
    ResourceAttributes['deployment.environment'] AS environment,
    {_first(nz._USER_KEYS)} AS user_id,
    {_first(nz._SESSION_KEYS)} AS session_id,
    lower({_first((
        "gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system"))}) AS provider,
    if(a['gen_ai.request.model'] != '', a['gen_ai.request.model'],
       if(JSONExtractString(a['llm.invocation_parameters'], 'model') != '', JSONExtractString(a['llm.invocation_parameters'], 'model'),
          {_first(("gen_ai.response.model", "llm.model_name"))})) AS request_model,
    {_first(("gen_ai.response.model", "llm.model_name"))} AS response_model,
    {pick(oi_in, nz._INPUT)} AS raw_in,
    {pick(oi_out, nz._OUTPUT)} AS raw_out,
    {pick(oi_total, nz._TOTAL)} AS raw_total,
    {pick(oi_cr, nz._CACHE_READ)} AS cache_read_tokens,
    {pick(oi_cw, nz._CACHE_WRITE)} AS cache_write_tokens,
    {pick(oi_rs, nz._REASONING)} AS reasoning_tokens,
    {_has(oi_in + oi_out + nz._INPUT + nz._OUTPUT)} AS has_usage,
    -- details reported apart from their whole are added once (normalise.usage)
    raw_total != 0 AND raw_total != raw_in + raw_out AS told,
    if(told AND cache_read_tokens + cache_write_tokens > 0
         AND (raw_total = raw_in + cache_read_tokens + cache_write_tokens + raw_out
              OR raw_total = raw_in + cache_read_tokens + cache_write_tokens + raw_out + reasoning_tokens)
       OR cache_read_tokens + cache_write_tokens > raw_in,
       raw_in + cache_read_tokens + cache_write_tokens, raw_in) AS input_tokens,
    if(told AND reasoning_tokens > 0
         AND (raw_total = raw_in + raw_out + reasoning_tokens
              OR raw_total = raw_in + cache_read_tokens + cache_write_tokens + raw_out + reasoning_tokens)
       OR reasoning_tokens > raw_out,
       raw_out + reasoning_tokens, raw_out) AS output_tokens,
    -- the response model's price, else the requested one's (a dated name genai-prices
    -- matches by rule is not a row of the price table)
    -- then the longest prefix genai-prices matches names by ('claude-3-5-haiku')
    arrayFirst(x -> startsWith(join_model, x.1) AND x.1 != '',
        (SELECT groupArray((model, input, cache_read, cache_write, output))
         FROM (SELECT * FROM {db}.otel_prices FINAL WHERE kind = 'prefix' ORDER BY length(model) DESC, model))) AS pf,
    p.model != '' OR q.model != '' OR pf.1 != '' AS priced,
    multiIf(p.model != '', p.input, q.model != '', q.input, pf.2) AS p_in,
    multiIf(p.model != '', p.cache_read, q.model != '', q.cache_read, pf.3) AS p_cr,
    multiIf(p.model != '', p.cache_write, q.model != '', q.cache_write, pf.4) AS p_cw,
    multiIf(p.model != '', p.output, q.model != '', q.output, pf.5) AS p_out,
    if(has_usage AND priced, toDecimal64((input_tokens - cache_read_tokens - cache_write_tokens) * p_in
        + cache_read_tokens * p_cr + cache_write_tokens * p_cw, 9), NULL) AS input_cost_usd,
    if(has_usage AND priced, toDecimal64(output_tokens * p_out, 9), NULL) AS output_cost_usd,
    if(has_usage AND priced, input_cost_usd + output_cost_usd, NULL) AS cost_usd,
    multiIf(NOT has_usage, 'no_usage', priced, 'priced', 'unpriced') AS cost_status,
    if(StatusCode IN ('Error', 'STATUS_CODE_ERROR'), 'error', 'ok') AS status,
    if(status = 'error', if(a['error.type'] != '', a['error.type'], '_OTHER'), '') AS error_type,
    map('tokentrail.source.scope', ScopeName, 'tokentrail.source', 'otel_traces') AS attributes
FROM (
    SELECT *, SpanAttributes AS a,
        if(a['gen_ai.response.model'] != '', a['gen_ai.response.model'],
           if(a['llm.model_name'] != '', a['llm.model_name'], a['gen_ai.request.model'])) AS join_model,
        if(a['gen_ai.request.model'] != '', a['gen_ai.request.model'],
           JSONExtractString(a['llm.invocation_parameters'], 'model')) AS join_request
    FROM {source} WHERE ({where})
) AS t
LEFT JOIN (SELECT * FROM {db}.otel_prices FINAL WHERE kind = 'equals') AS p ON p.model = t.join_model
LEFT JOIN (SELECT * FROM {db}.otel_prices FINAL WHERE kind = 'equals') AS q ON q.model = t.join_request
WHERE upper(a['openinference.span.kind']) IN ('LLM', 'EMBEDDING')
   OR a['gen_ai.operation.name'] IN ({ops})
   OR a['llm.request.type'] IN ('chat', 'completion', 'embedding')
"""


_COLUMNS = (
    "timestamp, duration_ms, trace_id, span_id, parent_span_id, name, operation, framework, service_name, project, "
    "environment, user_id, session_id, provider, request_model, response_model, input_tokens, output_tokens, "
    "cache_read_tokens, cache_write_tokens, reasoning_tokens, input_cost_usd, output_cost_usd, cost_usd, "
    "cost_status, status, error_type, attributes"
)


def check_table(name: str) -> str:
    if not _IDENT.match(name):
        raise ConfigError("--table", f"{name!r} is not a table name", "give db.table, e.g. otel.otel_traces")
    return name


def per_token_prices(prices: Any, model: str, provider: str | None, when: datetime) -> tuple[Decimal, ...] | None:
    """(input, cache_read, cache_write, output) USD per token, from the PriceBook."""
    def total(u: Usage) -> Decimal | None:
        found: Decimal | None = prices.cost(u, model, provider, when).total_usd
        return found

    base = total(Usage(input_tokens=_N))
    if base is None:
        return None
    values = (base, total(Usage(_N, 0, cache_read_tokens=_N)), total(Usage(_N, 0, cache_write_tokens=_N)), total(Usage(0, _N)))
    if any(v is None for v in values):
        return None
    return tuple(Decimal(v) / _N for v in values if v is not None)


def refresh_prices(store: Any, rt: Any, source: str, *, catalogue: bool = True) -> int:
    """Price every model named in `source` and (catalogue) every name and prefix genai-prices
    lists; without the catalogue, only names in `source` the table has no price for."""
    db = store.database
    names: dict[tuple[str, str], str | None] = {}  # (name, kind) -> provider
    known = set() if catalogue else {r[0] for r in store.rows(f"SELECT model FROM {db}.otel_prices WHERE kind = 'equals'")}
    try:
        if not catalogue:
            raise LookupError
        from genai_prices.data import providers

        for p in providers:
            for m in p.models:
                names.setdefault((m.id, "equals"), None)
                _literals(m.match, names)
    except Exception:  # no catalogue (or a newer genai-prices layout): only the names seen
        pass
    seen = store.rows(
        f"SELECT DISTINCT if(SpanAttributes['gen_ai.response.model'] != '', SpanAttributes['gen_ai.response.model'], "
        f"if(SpanAttributes['llm.model_name'] != '', SpanAttributes['llm.model_name'], SpanAttributes['gen_ai.request.model'])) AS m, "
        f"lower(SpanAttributes['gen_ai.provider.name'] || SpanAttributes['gen_ai.system'] || SpanAttributes['llm.provider']) "
        f"FROM {source} WHERE m != '' LIMIT 10000"
    )
    for model, provider in seen:
        if model not in known:
            names[(model, "equals")] = provider or None
    for model in rt.prices.overrides:
        names[(model, "equals")] = None
    when = clock.now()
    rows = []
    from ..pricing import PriceBook

    book = PriceBook(rt.prices.overrides)  # no plan memo: thousands of names would each write it
    for (model, kind), provider in names.items():
        found = per_token_prices(book, model, provider, when)
        if found is not None:
            rows.append([model, kind, *found, book.cost(Usage(1), model, provider, when).source, when])
    if rows:
        store.client.insert(
            f"{db}.otel_prices", rows,
            column_names=["model", "kind", "input", "cache_read", "cache_write", "output", "source", "updated"],
        )
    return len(rows)


def _literals(clause: Any, out: dict[tuple[str, str], str | None]) -> None:
    """The names (equals) and prefixes (starts_with) of a genai-prices match clause."""
    name = type(clause).__name__
    if name == "ClauseEquals":
        out.setdefault((clause.equals, "equals"), None)
    elif name == "ClauseStartsWith":
        out.setdefault((clause.starts_with, "prefix"), None)
    for sub in (getattr(clause, "or_", None) or []) + (getattr(clause, "and_", None) or []):
        _literals(sub, out)


def attach(store: Any, rt: Any, source: str) -> dict[str, Any]:
    """Create the price table and the view (idempotent); returns what was done."""
    source = check_table(source)
    db = store.database
    store.client.command(Template(_sql_file("otel_prices.sql")).substitute(db=db))
    priced = refresh_prices(store, rt, source)
    select = select_sql(source, db, rt.settings.project)
    view = Template(_sql_file("otel_traces_mv.sql")).substitute(db=db, select=f"SELECT {_COLUMNS} FROM ({select})")
    store.client.command(view)
    return {"view": f"{db}.otel_traces_to_spans", "source": source, "models_priced": priced}


def parse_since(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*([dhm])\s*", text or "")
    if not m:
        raise ConfigError("--since", f"{text!r} is not a duration", "use e.g. 30d, 12h or 90m")
    return int(m.group(1)) * {"d": 86400, "h": 3600, "m": 60}[m.group(2)]


def backfill(store: Any, rt: Any, source: str, since: str) -> int:
    """Insert the rows for spans already in `source` since `since` ago that are not in
    tokentrail.spans yet; returns the number inserted."""
    source = check_table(source)
    db = store.database
    seconds = parse_since(since)
    store.client.command(Template(_sql_file("otel_prices.sql")).substitute(db=db))
    refresh_prices(store, rt, source, catalogue=not store.rows(f"SELECT count() FROM {db}.otel_prices")[0][0])
    start = clock.now().timestamp() - seconds
    where = f"Timestamp >= toDateTime64({start:.6f}, 6, 'UTC')"
    select = select_sql(source, db, rt.settings.project, where)
    before = store.rows(f"SELECT count() FROM {db}.spans WHERE attributes['tokentrail.source'] = 'otel_traces'")[0][0]
    store.client.command(
        f"INSERT INTO {db}.spans ({_COLUMNS}) SELECT {_COLUMNS} FROM ({select}) "
        f"WHERE span_id NOT IN (SELECT span_id FROM {db}.spans WHERE attributes['tokentrail.source'] = 'otel_traces' "
        f"AND timestamp >= toDateTime64({start:.6f}, 6, 'UTC'))"
    )
    after = store.rows(f"SELECT count() FROM {db}.spans WHERE attributes['tokentrail.source'] = 'otel_traces'")[0][0]
    return int(after) - int(before)
