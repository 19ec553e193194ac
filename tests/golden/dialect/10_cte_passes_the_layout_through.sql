WITH recent AS (
  SELECT * FROM TailEvents WHERE eventTimestamp > NOW() - INTERVAL '15 minutes'
)
SELECT r.scriptName, event.request.cf.colo AS colo, COUNT(*) AS n
FROM recent AS r
GROUP BY ALL
-- expected
WITH recent AS (
  SELECT
    *
  FROM "TailEvents"
  WHERE
    "eventTimestamp" > NOW() - INTERVAL '15' MINUTES
)
SELECT
  "r"."scriptName",
  "event" ->> '$.request.cf.colo' AS colo,
  COUNT(*) AS n
FROM recent AS r
GROUP BY ALL
