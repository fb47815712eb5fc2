/*
description = "Per post and day: impressions, clicks, likes, shares, comments and dwell time."
materialized = "incremental"
partition_by = "dt"
tags = ["daily", "dws"]

[[checks]]
type = "unique"
columns = ["post_id", "dt"]

[[checks]]
type = "consistency"
name = "impressions equal the users' impressions"
left = "SELECT COALESCE(sum(impressions), 0) FROM dws.dws_post_daily WHERE dt = $run_date"
right = "SELECT COALESCE(sum(impressions), 0) FROM dws.dws_user_daily WHERE dt = $run_date"
*/
SELECT
  post_id,
  max(author_id) AS author_id,
  sum(CASE WHEN action = 'Feed Impression' THEN 1 ELSE 0 END) AS impressions,
  sum(CASE WHEN action = 'Post Clicked' THEN 1 ELSE 0 END) AS clicks,
  sum(CASE WHEN action = 'Post Liked' THEN 1 ELSE 0 END) AS likes,
  sum(CASE WHEN action = 'Post Shared' THEN 1 ELSE 0 END) AS shares,
  sum(CASE WHEN action = 'Comment Posted' THEN 1 ELSE 0 END) AS comments,
  COALESCE(sum(dwell_ms), 0) AS dwell_ms,
  count(DISTINCT user_id) AS users,
  dt
FROM dwd.dwd_user_action
WHERE dt = $run_date AND post_id IS NOT NULL
GROUP BY post_id, dt
