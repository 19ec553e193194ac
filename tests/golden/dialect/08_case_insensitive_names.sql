SELECT SCRIPTNAME, outcome FROM tailevents WHERE Outcome = 'ok'
-- expected
SELECT
  "scriptName",
  "outcome"
FROM "TailEvents"
WHERE
  "outcome" = 'ok'
