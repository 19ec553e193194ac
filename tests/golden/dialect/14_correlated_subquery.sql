SELECT scriptName
FROM TailEvents
WHERE EXISTS (SELECT 1 FROM WorkerRequests AS w WHERE w.colo = TailEvents.event.request.cf.colo AND w.status = 500)
-- expected
SELECT
  "scriptName"
FROM "TailEvents"
WHERE
  EXISTS(
    SELECT
      1
    FROM "WorkerRequests" AS w
    WHERE
      "w"."colo" = (
        "TailEvents"."event" ->> '$.request.cf.colo'
      )
      AND "w"."status" = 500
  )
