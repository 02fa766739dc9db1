"""`tokentrail otel attach | backfill`: the OpenTelemetry Collector's `otel_traces` in the ledger.

The Collector's clickhouseexporter writes one row per span, attributes as
`SpanAttributes Map(LowCardinality(String), String)`. `attach` creates, on the user's
ClickHouse, a materialized view from that table into `tokentrail.spans`: the model-call spans
of OpenInference, OpenLLMetry and OTel genai instrumentations, usage normalised as
interop/normalise.py does in process (the same attribute names, generated from its tuples),
priced from the store's `tokentrail.prices` at each span's own time (collector_prices.py).
`backfill` inserts the same rows for spans already in otel_traces (not those the view
already copied).

Both first `sync` the price table (pricing/table.py: the installed genai-prices version's rows
and the overrides', each version once) and price with those versions: the ones this process
prices with. A new genai-prices version or changed overrides: run `attach` again.
"""

from __future__ import annotations

import re
from importlib import resources
from string import Template
from typing import Any

from .. import clock
from ..errors import ConfigError
from . import normalise as nz
from .collector_prices import periods_join, price_columns, resolved_from

__all__ = ["attach", "backfill", "select_sql"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63})?$")
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


def select_sql(source: str, db: str, project: str, where: str = "1", *, versions: tuple[str, ...] = (),
               provider_order: tuple[str, ...] = ()) -> str:
    """The SELECT from the Collector's table to tokentrail.spans' columns, priced from
    `{db}.prices` rows of `versions`."""
    oi_in, oi_out, oi_total = ("llm.token_count.prompt",), ("llm.token_count.completion",), ("llm.token_count.total",)
    oi_cr, oi_cw = ("llm.token_count.prompt_details.cache_read",), ("llm.token_count.prompt_details.cache_write",)
    oi_rs = ("llm.token_count.completion_details.reasoning",)
    ops = ", ".join(_q(o) for o in sorted(nz._MODEL_OPS))
    is_oi = "mapContains(a, 'openinference.span.kind')"

    def pick(oi: tuple[str, ...], other: tuple[str, ...]) -> str:
        return f"if({is_oi}, {_count(oi)}, {_count(other)})"

    provider = _first(("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system"))
    inner = f"""SELECT *, SpanAttributes AS a,
        if(a['gen_ai.response.model'] != '', a['gen_ai.response.model'],
           if(a['llm.model_name'] != '', a['llm.model_name'], a['gen_ai.request.model'])) AS join_model,
        if(a['gen_ai.request.model'] != '', a['gen_ai.request.model'],
           JSONExtractString(a['llm.invocation_parameters'], 'model')) AS join_request,
        lower({provider}) AS prov,
        toDateTime64(Timestamp, 6, 'UTC') AS ts6  -- the price table's type (its valid_to may be past DateTime64(9)'s range)
    FROM {source}
    WHERE ({where}) AND (upper(a['openinference.span.kind']) IN ('LLM', 'EMBEDDING')
        OR a['gen_ai.operation.name'] IN ({ops}) OR a['llm.request.type'] IN ('chat', 'completion', 'embedding'))"""

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
    prov AS provider,
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
{price_columns()},
    if(StatusCode IN ('Error', 'STATUS_CODE_ERROR'), 'error', 'ok') AS status,
    if(status = 'error', if(a['error.type'] != '', a['error.type'], '_OTHER'), '') AS error_type,
    map('tokentrail.source.scope', ScopeName, 'tokentrail.source', 'otel_traces') AS attributes
FROM ({resolved_from(inner, db, versions, provider_order)}) AS r
{periods_join(db, versions)}
"""


_COLUMNS = (
    "timestamp, duration_ms, trace_id, span_id, parent_span_id, name, operation, framework, service_name, project, "
    "environment, user_id, session_id, provider, request_model, response_model, input_tokens, output_tokens, "
    "cache_read_tokens, cache_write_tokens, reasoning_tokens, input_cost_usd, output_cost_usd, cost_usd, "
    "cost_status, status, error_type, attributes, fees_usd, price_id, price_version"
)


def check_table(name: str) -> str:
    if not _IDENT.match(name):
        raise ConfigError("--table", f"{name!r} is not a table name", "give db.table, e.g. otel.otel_traces")
    return name


def _prices(store: Any, rt: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Sync tokentrail.prices (each version once) and return (the versions this process prices
    with, genai-prices' provider order)."""
    from ..pricing.ids import genai_version
    from ..pricing.table import sync

    sync(store, rt.prices, clock.now())
    versions = (genai_version(),) + ((rt.prices.overrides_version,) if rt.prices.overrides else ())
    try:
        from genai_prices.data import providers

        order = tuple(p.id for p in providers)
    except ImportError:  # genai-prices is a dependency; without it no row is priced anyway
        order = ()
    return versions, order


def attach(store: Any, rt: Any, source: str) -> dict[str, Any]:
    """Create the price table and the view (idempotent); returns what was done."""
    source = check_table(source)
    db = store.database
    versions, order = _prices(store, rt)
    store.client.command(f"DROP TABLE IF EXISTS {db}.otel_prices")  # the private price table of earlier versions
    select = select_sql(source, db, rt.settings.project, versions=versions, provider_order=order)
    view = Template(_sql_file("otel_traces_mv.sql")).substitute(db=db, select=f"SELECT {_COLUMNS} FROM ({select})")
    # a view made by an earlier attach prices with the versions of then: made again
    store.client.command(f"DROP VIEW IF EXISTS {db}.otel_traces_to_spans")
    store.client.command(view)
    return {"view": f"{db}.otel_traces_to_spans", "source": source, "price_versions": list(versions)}


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
    versions, order = _prices(store, rt)
    start = clock.now().timestamp() - seconds
    where = f"Timestamp >= toDateTime64({start:.6f}, 6, 'UTC')"
    select = select_sql(source, db, rt.settings.project, where, versions=versions, provider_order=order)
    before = store.rows(f"SELECT count() FROM {db}.spans WHERE attributes['tokentrail.source'] = 'otel_traces'")[0][0]
    store.client.command(
        f"INSERT INTO {db}.spans ({_COLUMNS}) SELECT {_COLUMNS} FROM ({select}) "
        f"WHERE span_id NOT IN (SELECT span_id FROM {db}.spans WHERE attributes['tokentrail.source'] = 'otel_traces' "
        f"AND timestamp >= toDateTime64({start:.6f}, 6, 'UTC'))"
    )
    after = store.rows(f"SELECT count() FROM {db}.spans WHERE attributes['tokentrail.source'] = 'otel_traces'")[0][0]
    return int(after) - int(before)
