SELECT
    $bucket_select AS $bucket,
    ${attribution_select}s.project AS project, s.environment AS environment, s.operation AS operation, s.provider AS provider,
    s.request_model AS request_model, s.response_model AS response_model, s.status AS status,
    s.cost_status AS cost_status, toLowCardinality(s.error_type) AS error_type, s.framework AS framework,
    s.service_name AS service_name, s.usage_estimated AS usage_estimated,
    s.cost_usd IS NOT NULL AS has_cost,
    toUInt8(arrayCount(t -> s.input_tokens > t, [32000, 32768, 64000, 65536, 100000, 128000, 131072, 199999, 200000, 256000, 262144, 272000, 500000, 512000, 524288, 1000000, 1048576])) AS input_tier,
    count() AS spans,
    sum(s.input_tokens) AS input_tokens,
    sum(s.output_tokens) AS output_tokens,
    sum(s.cache_read_tokens) AS cache_read_tokens,
    sum(s.cache_write_tokens) AS cache_write_tokens,
    sum(s.reasoning_tokens) AS reasoning_tokens,
    sum(toUInt64(greatest(toInt64(s.input_tokens) - toInt64(s.cache_read_tokens) - toInt64(s.cache_write_tokens), 0))) AS uncached_input_tokens,
    sum(greatest(s.output_tokens, s.reasoning_tokens)) AS output_or_reasoning_tokens,
    countIf(s.cache_read_tokens > 0) AS cache_read_calls,
    sum(ifNull(s.cost_usd, 0)) AS cost_usd,
    min(s.timestamp) AS min_timestamp
FROM $spans AS s
GROUP BY $bucket, ${attribution_group}project, environment, operation, provider, request_model, response_model, status,
    cost_status, error_type, framework, service_name, usage_estimated, has_cost, input_tier
