SELECT event.request.url AS url, COUNT(*) AS hits
FROM TailEvents
WHERE event.request.method = 'GET'
GROUP BY url
ORDER BY hits DESC
LIMIT 10
-- expected
SELECT
  "event" ->> '$.request.url' AS url,
  COUNT(*) AS hits
FROM "TailEvents"
WHERE
  (
    "event" ->> '$.request.method'
  ) = 'GET'
GROUP BY
  url
ORDER BY
  hits DESC
LIMIT 10
