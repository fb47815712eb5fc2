/*
description = "Per user and day: impressions, clicks, likes, shares, comments, follows, dwell time, posts, orders and messages."
materialized = "incremental"
partition_by = "dt"
tags = ["daily", "dws"]

[[checks]]
type = "unique"
columns = ["user_id", "dt"]

[[checks]]
type = "accepted_range"
column = "clicks"
min = 0

[[checks]]
type = "consistency"
name = "clicks equal the day's click events"
left = "SELECT COALESCE(sum(clicks), 0) FROM dws.dws_user_daily WHERE dt = $run_date"
right = "SELECT count(*) FROM ods.ods_event WHERE dt = $run_date AND event_type = 'Post Clicked' AND TRY_CAST(user_id AS BIGINT) IS NOT NULL"
*/
SELECT
  user_id,
  sum(CASE WHEN action = 'Feed Impression' THEN 1 ELSE 0 END) AS impressions,
  sum(CASE WHEN action = 'Post Clicked' THEN 1 ELSE 0 END) AS clicks,
  sum(CASE WHEN action = 'Post Liked' THEN 1 ELSE 0 END) AS likes,
  sum(CASE WHEN action = 'Post Shared' THEN 1 ELSE 0 END) AS shares,
  sum(CASE WHEN action = 'Comment Posted' THEN 1 ELSE 0 END) AS comments,
  sum(CASE WHEN action = 'User Followed' THEN 1 ELSE 0 END) AS follows,
  sum(CASE WHEN action = 'User Unfollowed' THEN 1 ELSE 0 END) AS unfollows,
  COALESCE(sum(dwell_ms), 0) AS dwell_ms,
  sum(CASE WHEN action = 'Post Created' THEN 1 ELSE 0 END) AS posts_created,
  sum(CASE WHEN action = 'Order Completed' THEN 1 ELSE 0 END) AS orders,
  COALESCE(sum(CASE WHEN action = 'Order Completed' THEN revenue END), 0.0) AS revenue,
  sum(CASE WHEN action = 'Message Sent' THEN 1 ELSE 0 END) AS messages,
  sum(CASE WHEN action = 'App Opened' THEN 1 ELSE 0 END) AS app_opens,
  count(*) AS actions,
  dt
FROM dwd.dwd_user_action
WHERE dt = $run_date
GROUP BY user_id, dt
