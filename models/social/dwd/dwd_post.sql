/*
description = "Every post with its tags and engagement counts up to the run date."
materialized = "table"
tags = ["dwd"]

[[checks]]
type = "unique"
columns = ["post_id"]

[[checks]]
type = "not_null"
columns = ["post_id", "author_id", "created_at"]

[[checks]]
type = "consistency"
name = "posts match ODS"
left = "SELECT count(*) FROM dwd.dwd_post"
right = "SELECT count(*) FROM ods.ods_posts"
*/
SELECT
  p.post_id,
  p.author_id,
  p.kind,
  p.tags,
  p.caption_length,
  p.created_at,
  COALESCE(a.impressions, 0) AS impressions,
  COALESCE(a.clicks, 0) AS clicks,
  COALESCE(a.likes, 0) AS likes,
  COALESCE(a.shares, 0) AS shares,
  COALESCE(a.comments, 0) AS comments
FROM ods.ods_posts p
LEFT JOIN (
  SELECT
    post_id,
    sum(CASE WHEN action = 'Feed Impression' THEN 1 ELSE 0 END) AS impressions,
    sum(CASE WHEN action = 'Post Clicked' THEN 1 ELSE 0 END) AS clicks,
    sum(CASE WHEN action = 'Post Liked' THEN 1 ELSE 0 END) AS likes,
    sum(CASE WHEN action = 'Post Shared' THEN 1 ELSE 0 END) AS shares,
    sum(CASE WHEN action = 'Comment Posted' THEN 1 ELSE 0 END) AS comments
  FROM dwd.dwd_user_action
  WHERE post_id IS NOT NULL AND dt <= $run_date
  GROUP BY post_id
) a ON a.post_id = p.post_id
