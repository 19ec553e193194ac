SELECT scriptName, window.start, errors
FROM ErrorsByWorker
WHERE errors > 0 AND window.start >= TIMESTAMP '2024-01-01 00:00:00'
-- expected
SELECT
  "scriptName",
  "window"['start'] AS start,
  "errors"
FROM "ErrorsByWorker"
WHERE
  "errors" > 0 AND "window"['start'] >= CAST('2024-01-01 00:00:00' AS TIMESTAMP)
