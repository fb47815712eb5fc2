/*
description = "Per post, as of the end of the run date: age, author's followers, and 1/7/30-day engagement with CTR; freshness for recall (age in hours, the author's posts since)."
materialized = "incremental"
partition_by = "dt"
tags = ["daily", "ads", "features"]

[[checks]]
type = "unique"
columns = ["post_id", "dt"]

[[checks]]
type = "accepted_range"
column = "age_days"
min = 0

[[checks]]
type = "accepted_range"
column = "ctr_7d"
min = 0
max = 1
severity = "warn"
*/
WITH eng AS (
  SELECT
    post_id,
    COALESCE(sum(CASE WHEN dt = $run_date THEN impressions END), 0) AS impressions_1d,
    COALESCE(sum(CASE WHEN dt = $run_date THEN clicks END), 0) AS clicks_1d,
    COALESCE(sum(CASE WHEN dt > $run_date - INTERVAL '7' DAY THEN impressions END), 0) AS impressions_7d,
    COALESCE(sum(CASE WHEN dt > $run_date - INTERVAL '7' DAY THEN clicks END), 0) AS clicks_7d,
    COALESCE(sum(CASE WHEN dt > $run_date - INTERVAL '7' DAY THEN likes END), 0) AS likes_7d,
    COALESCE(sum(CASE WHEN dt > $run_date - INTERVAL '7' DAY THEN shares END), 0) AS shares_7d,
    COALESCE(sum(impressions), 0) AS impressions_30d,
    COALESCE(sum(clicks), 0) AS clicks_30d,
    COALESCE(sum(likes), 0) AS likes_30d
  FROM dws.dws_post_daily
  WHERE dt > $run_date - INTERVAL '30' DAY AND dt <= $run_date
  GROUP BY post_id
),
followers AS (
  SELECT followee_id AS author_id, count(*) AS followers
  FROM dwd.dwd_user_relation
  WHERE valid_from < $run_end AND (valid_to IS NULL OR valid_to >= $run_end)
  GROUP BY followee_id
)
SELECT
  p.post_id,
  p.author_id,
  p.kind,
  CAST(date_part('day', $run_end - p.created_at) AS BIGINT) AS age_days,
  COALESCE(f.followers, 0) AS author_followers,
  COALESCE(e.impressions_1d, 0) AS impressions_1d,
  COALESCE(e.clicks_1d, 0) AS clicks_1d,
  COALESCE(e.impressions_7d, 0) AS impressions_7d,
  COALESCE(e.clicks_7d, 0) AS clicks_7d,
  COALESCE(e.likes_7d, 0) AS likes_7d,
  COALESCE(e.shares_7d, 0) AS shares_7d,
  COALESCE(e.impressions_30d, 0) AS impressions_30d,
  COALESCE(e.clicks_30d, 0) AS clicks_30d,
  COALESCE(e.likes_30d, 0) AS likes_30d,
  CAST(COALESCE(e.clicks_7d, 0) AS DOUBLE) / GREATEST(COALESCE(e.impressions_7d, 0), 1) AS ctr_7d,
  $run_date AS dt,
  -- Freshness for recall (last: the warehouse adds trailing columns to an existing table):
  -- whole hours since creation, and how many posts its author wrote after it (0: the
  -- author's latest; the organic feed shows followed accounts' latest 5).
  CAST(date_part('epoch', $run_end - p.created_at) / 3600 AS BIGINT) AS age_hours,
  CAST(row_number() OVER (PARTITION BY p.author_id ORDER BY p.created_at DESC, p.post_id DESC) - 1 AS BIGINT) AS author_newer_posts
FROM dwd.dwd_post p
LEFT JOIN eng e ON e.post_id = p.post_id
LEFT JOIN followers f ON f.author_id = p.author_id
WHERE p.created_at < $run_end
