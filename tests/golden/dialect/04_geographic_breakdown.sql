SELECT event.request.cf.country, event.request.cf.colo, COUNT(*) AS requests
FROM TailEvents
GROUP BY event.request.cf.country, event.request.cf.colo
ORDER BY requests DESC
-- expected
SELECT
  "event" ->> '$.request.cf.country' AS country,
  "event" ->> '$.request.cf.colo' AS colo,
  COUNT(*) AS requests
FROM "TailEvents"
GROUP BY
  "event" ->> '$.request.cf.country',
  "event" ->> '$.request.cf.colo'
ORDER BY
  requests DESC
