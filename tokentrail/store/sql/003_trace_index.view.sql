SELECT
    s.trace_id AS trace_id,
    min(s.timestamp) AS min_timestamp,
    max(s.timestamp) AS max_timestamp,
    max(s.timestamp + toIntervalMicrosecond(toInt64(s.duration_ms * 1000))) AS max_end,
    toUInt64(count()) AS spans,
    argMinState(s.name, (s.parent_span_id != '', s.timestamp)) AS root
FROM $spans AS s
GROUP BY trace_id
