SELECT event.request.cf.country AS country, COUNT(*) AS n
FROM TailEvents
GROUP BY country
HAVING n > 10
ORDER BY n DESC
-- expected
SELECT
  "event" ->> '$.request.cf.country' AS country,
  COUNT(*) AS n
FROM "TailEvents"
GROUP BY
  country
HAVING
  n > 10
ORDER BY
  n DESC
