/*
description = "A wide per-user feature table: 135 activity features over 1, 7 and 30-day windows ending on the run date, plus the user's three most engaged tags and authors over 30 days (their interests) and up to 12 followed accounts at the end of the day (for the recall model's user tower), for every user active in the last 30 days. Each day is its own partition, so a sample taken on day D joins the partition of D - 1 and never sees data from D or later."
materialized = "incremental"
partition_by = "dt"
tags = ["daily", "ads", "features"]

[[checks]]
type = "unique"
columns = ["user_id", "dt"]

[[checks]]
type = "null_rate"
column = "ctr_7d"
max = 0.0

[[checks]]
type = "accepted_range"
column = "ctr_30d"
min = 0
max = 1
severity = "warn"

[[checks]]
type = "consistency"
name = "one row per user active in the window"
left = "SELECT count(*) FROM ads.ads_user_features WHERE dt = $run_date"
right = "SELECT count(DISTINCT user_id) FROM dws.dws_user_daily WHERE dt > $run_date - INTERVAL '30' DAY AND dt <= $run_date"
*/
-- Generated layout: for each metric of dws_user_daily, sum / max / per-day average over 1, 7
-- and 30 days, plus active days, CTR and like rate per window.
WITH base AS (
SELECT
  d.user_id,
  count(DISTINCT CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.dt END) AS active_days_1d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.impressions END), 0) AS impressions_sum_1d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.impressions END), 0) AS impressions_max_1d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.impressions END), 0) AS DOUBLE) / 1.0 AS impressions_avg_1d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.clicks END), 0) AS clicks_sum_1d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.clicks END), 0) AS clicks_max_1d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.clicks END), 0) AS DOUBLE) / 1.0 AS clicks_avg_1d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.likes END), 0) AS likes_sum_1d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.likes END), 0) AS likes_max_1d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.likes END), 0) AS DOUBLE) / 1.0 AS likes_avg_1d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.shares END), 0) AS shares_sum_1d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.shares END), 0) AS shares_max_1d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.shares END), 0) AS DOUBLE) / 1.0 AS shares_avg_1d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.comments END), 0) AS comments_sum_1d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.comments END), 0) AS comments_max_1d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.comments END), 0) AS DOUBLE) / 1.0 AS comments_avg_1d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.follows END), 0) AS follows_sum_1d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.follows END), 0) AS follows_max_1d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.follows END), 0) AS DOUBLE) / 1.0 AS follows_avg_1d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.unfollows END), 0) AS unfollows_sum_1d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.unfollows END), 0) AS unfollows_max_1d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.unfollows END), 0) AS DOUBLE) / 1.0 AS unfollows_avg_1d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.dwell_ms END), 0) AS dwell_ms_sum_1d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.dwell_ms END), 0) AS dwell_ms_max_1d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.dwell_ms END), 0) AS DOUBLE) / 1.0 AS dwell_ms_avg_1d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.posts_created END), 0) AS posts_created_sum_1d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.posts_created END), 0) AS posts_created_max_1d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.posts_created END), 0) AS DOUBLE) / 1.0 AS posts_created_avg_1d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.orders END), 0) AS orders_sum_1d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.orders END), 0) AS orders_max_1d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.orders END), 0) AS DOUBLE) / 1.0 AS orders_avg_1d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.revenue END), 0) AS revenue_sum_1d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.revenue END), 0) AS revenue_max_1d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.revenue END), 0) AS DOUBLE) / 1.0 AS revenue_avg_1d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.messages END), 0) AS messages_sum_1d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.messages END), 0) AS messages_max_1d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.messages END), 0) AS DOUBLE) / 1.0 AS messages_avg_1d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.app_opens END), 0) AS app_opens_sum_1d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.app_opens END), 0) AS app_opens_max_1d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.app_opens END), 0) AS DOUBLE) / 1.0 AS app_opens_avg_1d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.actions END), 0) AS actions_sum_1d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.actions END), 0) AS actions_max_1d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.actions END), 0) AS DOUBLE) / 1.0 AS actions_avg_1d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.clicks END), 0) AS DOUBLE) / GREATEST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.impressions END), 0), 1) AS ctr_1d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.likes END), 0) AS DOUBLE) / GREATEST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '1' DAY AND d.dt <= $run_date THEN d.impressions END), 0), 1) AS like_rate_1d,
  count(DISTINCT CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.dt END) AS active_days_7d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.impressions END), 0) AS impressions_sum_7d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.impressions END), 0) AS impressions_max_7d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.impressions END), 0) AS DOUBLE) / 7.0 AS impressions_avg_7d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.clicks END), 0) AS clicks_sum_7d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.clicks END), 0) AS clicks_max_7d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.clicks END), 0) AS DOUBLE) / 7.0 AS clicks_avg_7d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.likes END), 0) AS likes_sum_7d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.likes END), 0) AS likes_max_7d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.likes END), 0) AS DOUBLE) / 7.0 AS likes_avg_7d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.shares END), 0) AS shares_sum_7d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.shares END), 0) AS shares_max_7d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.shares END), 0) AS DOUBLE) / 7.0 AS shares_avg_7d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.comments END), 0) AS comments_sum_7d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.comments END), 0) AS comments_max_7d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.comments END), 0) AS DOUBLE) / 7.0 AS comments_avg_7d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.follows END), 0) AS follows_sum_7d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.follows END), 0) AS follows_max_7d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.follows END), 0) AS DOUBLE) / 7.0 AS follows_avg_7d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.unfollows END), 0) AS unfollows_sum_7d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.unfollows END), 0) AS unfollows_max_7d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.unfollows END), 0) AS DOUBLE) / 7.0 AS unfollows_avg_7d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.dwell_ms END), 0) AS dwell_ms_sum_7d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.dwell_ms END), 0) AS dwell_ms_max_7d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.dwell_ms END), 0) AS DOUBLE) / 7.0 AS dwell_ms_avg_7d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.posts_created END), 0) AS posts_created_sum_7d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.posts_created END), 0) AS posts_created_max_7d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.posts_created END), 0) AS DOUBLE) / 7.0 AS posts_created_avg_7d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.orders END), 0) AS orders_sum_7d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.orders END), 0) AS orders_max_7d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.orders END), 0) AS DOUBLE) / 7.0 AS orders_avg_7d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.revenue END), 0) AS revenue_sum_7d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.revenue END), 0) AS revenue_max_7d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.revenue END), 0) AS DOUBLE) / 7.0 AS revenue_avg_7d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.messages END), 0) AS messages_sum_7d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.messages END), 0) AS messages_max_7d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.messages END), 0) AS DOUBLE) / 7.0 AS messages_avg_7d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.app_opens END), 0) AS app_opens_sum_7d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.app_opens END), 0) AS app_opens_max_7d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.app_opens END), 0) AS DOUBLE) / 7.0 AS app_opens_avg_7d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.actions END), 0) AS actions_sum_7d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.actions END), 0) AS actions_max_7d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.actions END), 0) AS DOUBLE) / 7.0 AS actions_avg_7d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.clicks END), 0) AS DOUBLE) / GREATEST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.impressions END), 0), 1) AS ctr_7d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.likes END), 0) AS DOUBLE) / GREATEST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '7' DAY AND d.dt <= $run_date THEN d.impressions END), 0), 1) AS like_rate_7d,
  count(DISTINCT CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.dt END) AS active_days_30d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.impressions END), 0) AS impressions_sum_30d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.impressions END), 0) AS impressions_max_30d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.impressions END), 0) AS DOUBLE) / 30.0 AS impressions_avg_30d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.clicks END), 0) AS clicks_sum_30d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.clicks END), 0) AS clicks_max_30d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.clicks END), 0) AS DOUBLE) / 30.0 AS clicks_avg_30d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.likes END), 0) AS likes_sum_30d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.likes END), 0) AS likes_max_30d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.likes END), 0) AS DOUBLE) / 30.0 AS likes_avg_30d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.shares END), 0) AS shares_sum_30d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.shares END), 0) AS shares_max_30d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.shares END), 0) AS DOUBLE) / 30.0 AS shares_avg_30d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.comments END), 0) AS comments_sum_30d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.comments END), 0) AS comments_max_30d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.comments END), 0) AS DOUBLE) / 30.0 AS comments_avg_30d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.follows END), 0) AS follows_sum_30d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.follows END), 0) AS follows_max_30d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.follows END), 0) AS DOUBLE) / 30.0 AS follows_avg_30d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.unfollows END), 0) AS unfollows_sum_30d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.unfollows END), 0) AS unfollows_max_30d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.unfollows END), 0) AS DOUBLE) / 30.0 AS unfollows_avg_30d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.dwell_ms END), 0) AS dwell_ms_sum_30d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.dwell_ms END), 0) AS dwell_ms_max_30d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.dwell_ms END), 0) AS DOUBLE) / 30.0 AS dwell_ms_avg_30d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.posts_created END), 0) AS posts_created_sum_30d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.posts_created END), 0) AS posts_created_max_30d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.posts_created END), 0) AS DOUBLE) / 30.0 AS posts_created_avg_30d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.orders END), 0) AS orders_sum_30d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.orders END), 0) AS orders_max_30d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.orders END), 0) AS DOUBLE) / 30.0 AS orders_avg_30d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.revenue END), 0) AS revenue_sum_30d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.revenue END), 0) AS revenue_max_30d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.revenue END), 0) AS DOUBLE) / 30.0 AS revenue_avg_30d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.messages END), 0) AS messages_sum_30d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.messages END), 0) AS messages_max_30d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.messages END), 0) AS DOUBLE) / 30.0 AS messages_avg_30d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.app_opens END), 0) AS app_opens_sum_30d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.app_opens END), 0) AS app_opens_max_30d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.app_opens END), 0) AS DOUBLE) / 30.0 AS app_opens_avg_30d,
  COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.actions END), 0) AS actions_sum_30d,
  COALESCE(max(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.actions END), 0) AS actions_max_30d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.actions END), 0) AS DOUBLE) / 30.0 AS actions_avg_30d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.clicks END), 0) AS DOUBLE) / GREATEST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.impressions END), 0), 1) AS ctr_30d,
  CAST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.likes END), 0) AS DOUBLE) / GREATEST(COALESCE(sum(CASE WHEN d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date THEN d.impressions END), 0), 1) AS like_rate_30d,
  $run_date AS dt
FROM dws.dws_user_daily d
WHERE d.dt > $run_date - INTERVAL '30' DAY AND d.dt <= $run_date
GROUP BY d.user_id
),
-- Interests: the tags of the posts a user clicked or liked in the 30 days, most engaged first
-- (ties by tag name, so a rerun gives the same row).
post_tags AS (
  SELECT post_id, unnest(string_to_array(tags, ',')) AS tag
  FROM dwd.dwd_post
  WHERE tags IS NOT NULL AND tags <> ''
),
tag_engagement AS (
  SELECT a.user_id, t.tag, count(*) AS n
  FROM dwd.dwd_user_action a
  JOIN post_tags t ON t.post_id = a.post_id
  WHERE a.dt > $run_date - INTERVAL '30' DAY AND a.dt <= $run_date
    AND a.action IN ('Post Clicked', 'Post Liked')
  GROUP BY a.user_id, t.tag
),
ranked AS (
  SELECT user_id, tag, n,
         row_number() OVER (PARTITION BY user_id ORDER BY n DESC, tag) AS r,
         sum(n) OVER (PARTITION BY user_id) AS total
  FROM tag_engagement
),
-- The authors whose posts the user clicked or liked most in the 30 days (ties by id).
author_engagement AS (
  SELECT a.user_id, p.author_id, count(*) AS n
  FROM dwd.dwd_user_action a
  JOIN dwd.dwd_post p ON p.post_id = a.post_id
  WHERE a.dt > $run_date - INTERVAL '30' DAY AND a.dt <= $run_date
    AND a.action IN ('Post Clicked', 'Post Liked') AND p.author_id <> a.user_id
  GROUP BY a.user_id, p.author_id
),
authors AS (
  SELECT user_id,
         max(CASE WHEN r = 1 THEN author_id END) AS author_1_30d,
         max(CASE WHEN r = 2 THEN author_id END) AS author_2_30d,
         max(CASE WHEN r = 3 THEN author_id END) AS author_3_30d
  FROM (
    SELECT user_id, author_id,
           row_number() OVER (PARTITION BY user_id ORDER BY n DESC, author_id) AS r
    FROM author_engagement
  ) ranked_authors
  GROUP BY user_id
),
-- The accounts the user follows at the end of the run date, up to 12: the most engaged with
-- over the 30 days first, then the most recently followed (ties by id). The recall model's
-- user tower reads them as a bag in the item tower's author space (the organic feed shows
-- followed accounts' latest posts, and a follow lifts the click chance).
follows_now AS (
  SELECT r.follower_id AS user_id, r.followee_id,
         row_number() OVER (PARTITION BY r.follower_id
                            ORDER BY COALESCE(ae.n, 0) DESC, r.valid_from DESC, r.followee_id) AS r
  FROM (
    SELECT follower_id, followee_id, max(valid_from) AS valid_from
    FROM dwd.dwd_user_relation
    WHERE valid_from < $run_end AND (valid_to IS NULL OR valid_to >= $run_end)
    GROUP BY follower_id, followee_id
  ) r
  LEFT JOIN author_engagement ae ON ae.user_id = r.follower_id AND ae.author_id = r.followee_id
),
followed AS (
  SELECT user_id,
         max(CASE WHEN r = 1 THEN followee_id END) AS followed_1,
         max(CASE WHEN r = 2 THEN followee_id END) AS followed_2,
         max(CASE WHEN r = 3 THEN followee_id END) AS followed_3,
         max(CASE WHEN r = 4 THEN followee_id END) AS followed_4,
         max(CASE WHEN r = 5 THEN followee_id END) AS followed_5,
         max(CASE WHEN r = 6 THEN followee_id END) AS followed_6,
         max(CASE WHEN r = 7 THEN followee_id END) AS followed_7,
         max(CASE WHEN r = 8 THEN followee_id END) AS followed_8,
         max(CASE WHEN r = 9 THEN followee_id END) AS followed_9,
         max(CASE WHEN r = 10 THEN followee_id END) AS followed_10,
         max(CASE WHEN r = 11 THEN followee_id END) AS followed_11,
         max(CASE WHEN r = 12 THEN followee_id END) AS followed_12,
         count(*) AS following_count
  FROM follows_now
  GROUP BY user_id
),
interests AS (
  SELECT user_id,
         max(CASE WHEN r = 1 THEN tag END) AS tag_1_30d,
         max(CASE WHEN r = 2 THEN tag END) AS tag_2_30d,
         max(CASE WHEN r = 3 THEN tag END) AS tag_3_30d,
         CAST(max(CASE WHEN r = 1 THEN n END) AS DOUBLE) / max(total) AS tag_1_share_30d,
         CAST(max(CASE WHEN r = 2 THEN n END) AS DOUBLE) / max(total) AS tag_2_share_30d,
         CAST(max(CASE WHEN r = 3 THEN n END) AS DOUBLE) / max(total) AS tag_3_share_30d
  FROM ranked
  GROUP BY user_id
)
SELECT base.*, i.tag_1_30d, i.tag_2_30d, i.tag_3_30d,
       COALESCE(i.tag_1_share_30d, 0.0) AS tag_1_share_30d,
       au.author_1_30d, au.author_2_30d, au.author_3_30d,
       fl.followed_1, fl.followed_2, fl.followed_3, fl.followed_4, fl.followed_5, fl.followed_6,
       fl.followed_7, fl.followed_8, fl.followed_9, fl.followed_10, fl.followed_11,
       fl.followed_12, COALESCE(fl.following_count, 0) AS following_count,
       COALESCE(i.tag_2_share_30d, 0.0) AS tag_2_share_30d,
       COALESCE(i.tag_3_share_30d, 0.0) AS tag_3_share_30d
FROM base
LEFT JOIN interests i ON i.user_id = base.user_id
LEFT JOIN authors au ON au.user_id = base.user_id
LEFT JOIN followed fl ON fl.user_id = base.user_id
