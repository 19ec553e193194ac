SELECT $id, $type, createdAt
FROM posts
WHERE $type = $1 AND "$id" LIKE ? AND version > 1
-- expected
SELECT
  "$id",
  "$type",
  "createdAt"
FROM "posts"
WHERE
  "$type" = $1 AND "$id" LIKE ? AND "version" > 1
