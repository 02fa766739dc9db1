SELECT
    toStartOfHour(s.timestamp) AS hour,
    reinterpretAsUInt128(sipHash128(s.trace_id)) AS trace_key,
    any(s.trace_id) AS trace_id,
    count() AS calls,
    countIf(s.cost_usd IS NOT NULL) AS priced_calls,
    sum(ifNull(s.cost_usd, 0)) AS cost_usd,
    sum(s.input_tokens) AS input_tokens,
    sum(s.output_tokens) AS output_tokens,
    countIf(s.status = 'error') AS errors,
    min(s.timestamp) AS min_timestamp,
    any(s.user_id) AS user_id,
    any(toString(s.feature)) AS feature
FROM $spans AS s
WHERE s.operation IN ('chat', 'text_completion', 'embeddings')
GROUP BY hour, trace_key
