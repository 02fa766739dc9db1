SELECT
    toStartOfHour(s.timestamp) AS hour,
    reinterpretAsUInt128(sipHash128(s.trace_id)) AS trace_key,
    any(s.trace_id) AS trace_id,
    count() AS calls,
    countIf(s.cost_usd IS NOT NULL) AS priced_calls,
    sum(ifNull(s.cost_usd, 0)) AS cost_usd,
    min(s.timestamp) AS min_timestamp
FROM $spans AS s
WHERE s.operation IN ('chat', 'text_completion', 'embeddings')
GROUP BY hour, trace_key
