SELECT t.scriptName, w.status, AVG(w.latencyMs) AS latency
FROM TailEvents AS t
JOIN WorkerRequests AS w ON w.colo = t.event.request.cf.colo
WHERE w.status >= 400
GROUP BY 1, 2
-- expected
SELECT
  "t"."scriptName",
  "w"."status",
  AVG("w"."latencyMs") AS latency
FROM "TailEvents" AS t
JOIN "WorkerRequests" AS w
  ON "w"."colo" = (
    "t"."event" ->> '$.request.cf.colo'
  )
WHERE
  "w"."status" >= 400
GROUP BY
  1,
  2
