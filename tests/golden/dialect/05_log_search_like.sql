SELECT $id, scriptName, logs
FROM TailEvents
WHERE logs LIKE '%timeout%' OR exceptions ILIKE '%TypeError%'
-- expected
SELECT
  "$id",
  "scriptName",
  "logs"
FROM "TailEvents"
WHERE
  "logs" LIKE '%timeout%' OR "exceptions" ILIKE '%TypeError%'
