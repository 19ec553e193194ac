SELECT scriptName, n FROM (SELECT scriptName, COUNT(*) AS n FROM TailEvents GROUP BY 1) AS s WHERE n > 1
UNION ALL
SELECT scriptName, errors FROM ErrorsByWorker
-- expected
SELECT
  "scriptName",
  "n"
FROM (
  SELECT
    "scriptName",
    COUNT(*) AS n
  FROM "TailEvents"
  GROUP BY
    1
) AS s
WHERE
  "n" > 1
UNION ALL
SELECT
  "scriptName",
  "errors"
FROM "ErrorsByWorker"
