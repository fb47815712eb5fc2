/*
description = "User → top-20 similar users by co-interaction (clicked, liked, commented or shared the same posts in the last 30 days), cosine-scored. Posts with more than 500 interacting users are left out: they say little about taste and would square the join."
materialized = "table"
tags = ["ads", "recall"]

[[checks]]
type = "unique"
columns = ["user_id", "similar_user_id"]

[[checks]]
type = "accepted_range"
column = "rank"
min = 1
max = 20

[[checks]]
type = "accepted_range"
column = "score"
min = 0
max = 1.000001
*/
WITH ui AS (
  SELECT DISTINCT user_id, post_id
  FROM dwd.dwd_user_action
  WHERE dt > $run_date - INTERVAL '30' DAY AND dt <= $run_date
    AND action IN ('Post Clicked', 'Post Liked', 'Comment Posted', 'Post Shared')
    AND post_id IS NOT NULL
),
post_users AS (
  SELECT post_id FROM ui GROUP BY post_id HAVING count(*) BETWEEN 2 AND 500
),
kept AS (
  SELECT ui.user_id, ui.post_id FROM ui JOIN post_users p ON p.post_id = ui.post_id
),
n AS (
  SELECT user_id, count(*) AS n FROM ui GROUP BY user_id
),
co AS (
  SELECT a.user_id, b.user_id AS similar_user_id, count(*) AS common
  FROM kept a
  JOIN kept b ON a.post_id = b.post_id AND a.user_id <> b.user_id
  GROUP BY a.user_id, b.user_id
),
scored AS (
  SELECT
    co.user_id,
    co.similar_user_id,
    co.common,
    CAST(co.common AS DOUBLE) / sqrt(CAST(na.n AS DOUBLE) * CAST(nb.n AS DOUBLE)) AS score
  FROM co
  JOIN n na ON na.user_id = co.user_id
  JOIN n nb ON nb.user_id = co.similar_user_id
)
SELECT
  user_id,
  similar_user_id,
  common,
  score,
  ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY score DESC, similar_user_id) AS rank
FROM scored
QUALIFY rank <= 20
