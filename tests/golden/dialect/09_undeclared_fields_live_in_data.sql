SELECT title, author.name, tags
FROM posts
WHERE views > 100 AND rating >= 4.5 AND author.verified = TRUE AND category = 'db'
ORDER BY publishedAt DESC
-- expected
SELECT
  "title",
  "$data" ->> '$.author.name' AS name,
  "$data" ->> '$.tags' AS tags
FROM "posts"
WHERE
  "views" > 100
  AND TRY_CAST("$data" ->> '$.rating' AS DOUBLE) >= 4.5
  AND TRY_CAST("$data" ->> '$.author.verified' AS BOOLEAN) = TRUE
  AND (
    "$data" ->> '$.category'
  ) = 'db'
ORDER BY
  "$data" ->> '$.publishedAt' DESC
