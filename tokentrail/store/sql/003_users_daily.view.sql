SELECT toDate(s.timestamp) AS day, s.user_id AS user_id, count() AS spans
FROM $spans AS s
GROUP BY day, user_id
