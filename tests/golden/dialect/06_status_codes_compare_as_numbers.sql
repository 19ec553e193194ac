SELECT event.response.status AS status, COUNT(*)
FROM TailEvents
WHERE event.response.status >= 500 AND event.response.status NOT IN (503, 504)
GROUP BY status
-- expected
SELECT
  "event" ->> '$.response.status' AS status,
  COUNT(*)
FROM "TailEvents"
WHERE
  TRY_CAST("event" ->> '$.response.status' AS DOUBLE) >= 500
  AND NOT TRY_CAST("event" ->> '$.response.status' AS DOUBLE) IN (503, 504)
GROUP BY
  status
