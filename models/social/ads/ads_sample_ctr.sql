/*
description = "CTR training samples: each (user, post) impression of the run date, labelled 1 if the user clicked the post that day. Every feature comes from partitions of the day before (dt = run date - 1): point-in-time correct."
materialized = "incremental"
partition_by = "dt"
tags = ["daily", "ads", "samples"]

[[checks]]
type = "unique"
columns = ["user_id", "post_id", "dt"]

[[checks]]
type = "accepted_values"
column = "label"
values = ["0", "1"]

[[checks]]
type = "consistency"
name = "features are from the day before"
left = "SELECT count(*) FROM ads.ads_sample_ctr WHERE dt = $run_date AND feature_dt IS NOT NULL AND feature_dt <> $prev_date"
right = "SELECT 0"
*/
WITH imp AS (
  SELECT user_id, post_id, max(author_id) AS author_id, min(event_ts) AS sample_ts
  FROM dwd.dwd_user_action
  WHERE dt = $run_date AND action = 'Feed Impression' AND post_id IS NOT NULL
  GROUP BY user_id, post_id
),
clk AS (
  SELECT DISTINCT user_id, post_id
  FROM dwd.dwd_user_action
  WHERE dt = $run_date AND action = 'Post Clicked'
)
SELECT
  imp.user_id,
  imp.post_id,
  imp.author_id,
  imp.sample_ts,
  CASE WHEN clk.user_id IS NULL THEN 0 ELSE 1 END AS label,
  uf.dt AS feature_dt,
  COALESCE(uf.impressions_sum_7d, 0) AS u_impressions_7d,
  COALESCE(uf.clicks_sum_7d, 0) AS u_clicks_7d,
  COALESCE(uf.ctr_7d, 0.0) AS u_ctr_7d,
  COALESCE(uf.ctr_30d, 0.0) AS u_ctr_30d,
  COALESCE(uf.likes_sum_30d, 0) AS u_likes_30d,
  COALESCE(uf.dwell_ms_avg_7d, 0.0) AS u_dwell_ms_avg_7d,
  COALESCE(uf.active_days_30d, 0) AS u_active_days_30d,
  COALESCE(pf.age_days, 0) AS p_age_days,
  COALESCE(pf.author_followers, 0) AS p_author_followers,
  COALESCE(pf.impressions_7d, 0) AS p_impressions_7d,
  COALESCE(pf.ctr_7d, 0.0) AS p_ctr_7d,
  COALESCE(pi.interactions, 0) AS pair_interactions,
  -- The user followed the author when the day began.
  CASE WHEN fo.follower_id IS NULL THEN 0 ELSE 1 END AS follows_author,
  -- The post's tags against the user's three most engaged tags of the 30 days before:
  -- 3 for the first, 2 for the second, 1 for the third (the feed computes the same online).
  CASE WHEN array_has(string_to_array(po.tags, ','), uf.tag_1_30d) THEN 3 ELSE 0 END
    + CASE WHEN array_has(string_to_array(po.tags, ','), uf.tag_2_30d) THEN 2 ELSE 0 END
    + CASE WHEN array_has(string_to_array(po.tags, ','), uf.tag_3_30d) THEN 1 ELSE 0 END
    AS tag_match,
  $run_date AS dt,
  -- The post's tags weighted by how much the user engages with each (appended after dt: the
  -- warehouse adds new trailing columns to the table): the first top tag counts 1, the others
  -- their 30-day share over the first's (by rank, 2/3 and 1/3, where a share is missing).
  -- The feed computes the same online (feed.tag_affinity).
  CASE WHEN array_has(string_to_array(po.tags, ','), uf.tag_1_30d) THEN 1.0 ELSE 0.0 END
    + CASE WHEN array_has(string_to_array(po.tags, ','), uf.tag_2_30d)
        THEN COALESCE(uf.tag_2_share_30d / NULLIF(uf.tag_1_share_30d, 0.0), 2.0 / 3.0)
        ELSE 0.0 END
    + CASE WHEN array_has(string_to_array(po.tags, ','), uf.tag_3_30d)
        THEN COALESCE(uf.tag_3_share_30d / NULLIF(uf.tag_1_share_30d, 0.0), 1.0 / 3.0)
        ELSE 0.0 END
    AS tag_affinity
FROM imp
LEFT JOIN clk ON clk.user_id = imp.user_id AND clk.post_id = imp.post_id
LEFT JOIN ads.ads_user_features uf ON uf.user_id = imp.user_id AND uf.dt = $prev_date
LEFT JOIN ads.ads_post_features pf ON pf.post_id = imp.post_id AND pf.dt = $prev_date
LEFT JOIN dws.dws_pair_interaction pi
  ON pi.user_id = imp.user_id AND pi.author_id = imp.author_id AND pi.dt = $prev_date
LEFT JOIN dwd.dwd_post po ON po.post_id = imp.post_id
LEFT JOIN (
  SELECT DISTINCT follower_id, followee_id
  FROM dwd.dwd_user_relation
  WHERE valid_from < CAST($run_date AS TIMESTAMP)
    AND (valid_to IS NULL OR valid_to >= CAST($run_date AS TIMESTAMP))
) fo ON fo.follower_id = imp.user_id AND fo.followee_id = imp.author_id
