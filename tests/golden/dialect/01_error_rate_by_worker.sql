SELECT scriptName, COUNT(*) AS requests, SUM(CASE WHEN outcome != 'ok' THEN 1 ELSE 0 END) AS errors
FROM TailEvents
WHERE eventTimestamp > NOW() - INTERVAL '1 hour'
GROUP BY scriptName
ORDER BY errors DESC
-- expected
SELECT
  "scriptName",
  COUNT(*) AS requests,
  SUM(CASE WHEN "outcome" <> 'ok' THEN 1 ELSE 0 END) AS errors
FROM "TailEvents"
WHERE
  "eventTimestamp" > NOW() - INTERVAL '1' HOUR
GROUP BY
  "scriptName"
ORDER BY
  errors DESC
