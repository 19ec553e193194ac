SELECT scriptName, eventTimestamp, exceptions[0].name, exceptions[0].message
FROM TailEvents
WHERE outcome = 'exception'
ORDER BY eventTimestamp DESC
LIMIT 20
-- expected
SELECT
  "scriptName",
  "eventTimestamp",
  "exceptions" ->> '$[0].name' AS name,
  "exceptions" ->> '$[0].message' AS message
FROM "TailEvents"
WHERE
  "outcome" = 'exception'
ORDER BY
  eventTimestamp DESC
LIMIT 20
