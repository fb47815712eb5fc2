/*
description = "Cumulative user → author interaction as of the end of each day (one partition per day), so samples of a day can join the state of the day before."
materialized = "incremental"
partition_by = "dt"
tags = ["daily", "dws"]

[[checks]]
type = "unique"
columns = ["user_id", "author_id", "dt"]

[[checks]]
type = "accepted_range"
column = "interactions"
min = 1
*/
SELECT
  a.user_id,
  p.author_id,
  sum(CASE WHEN a.action = 'Post Clicked' THEN 1 ELSE 0 END) AS clicks,
  sum(CASE WHEN a.action = 'Post Liked' THEN 1 ELSE 0 END) AS likes,
  sum(CASE WHEN a.action = 'Comment Posted' THEN 1 ELSE 0 END) AS comments,
  sum(CASE WHEN a.action = 'Post Shared' THEN 1 ELSE 0 END) AS shares,
  count(*) AS interactions,
  max(a.dt) AS last_interaction_dt,
  $run_date AS dt
FROM dwd.dwd_user_action a
JOIN dwd.dwd_post p ON p.post_id = a.post_id
WHERE a.dt <= $run_date
  AND a.action IN ('Post Clicked', 'Post Liked', 'Comment Posted', 'Post Shared')
  AND a.user_id <> p.author_id
GROUP BY a.user_id, p.author_id
