SELECT title FROM posts WHERE publishedAt > NOW() - INTERVAL '7 days' AND createdAt < NOW()
-- expected
SELECT
  "title"
FROM "posts"
WHERE
  TRY_CAST(COALESCE("$data" ->> '$.publishedAt."$date"', "$data" ->> '$.publishedAt') AS TIMESTAMPTZ) > NOW() - INTERVAL '7' DAYS
  AND "createdAt" < NOW()
