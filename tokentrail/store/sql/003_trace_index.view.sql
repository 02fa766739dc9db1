SELECT s.trace_id AS trace_id, min(s.timestamp) AS min_timestamp, max(s.timestamp) AS max_timestamp
FROM $spans AS s
GROUP BY trace_id
