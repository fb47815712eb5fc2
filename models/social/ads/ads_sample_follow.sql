/*
description = "Follow training samples for the run date: positives are the accounts a user followed that day; negatives are authors the user saw that day and did not follow (at most 5 per user). Features are from the day before: point-in-time correct."
materialized = "incremental"
partition_by = "dt"
tags = ["daily", "ads", "samples"]

[[checks]]
type = "unique"
columns = ["user_id", "candidate_id", "dt"]

[[checks]]
type = "accepted_values"
column = "label"
values = ["0", "1"]
*/
WITH followed AS (
  SELECT user_id, followee_id AS candidate_id, min(event_ts) AS sample_ts
  FROM dwd.dwd_user_action
  WHERE dt = $run_date AND action = 'User Followed' AND followee_id IS NOT NULL
  GROUP BY user_id, followee_id
),
already AS (
  SELECT follower_id AS user_id, followee_id AS candidate_id
  FROM dwd.dwd_user_relation
  WHERE valid_from < $run_start AND (valid_to IS NULL OR valid_to >= $run_start)
),
seen AS (
  SELECT user_id, author_id AS candidate_id, min(event_ts) AS sample_ts
  FROM dwd.dwd_user_action
  WHERE dt = $run_date AND action = 'Feed Impression' AND author_id IS NOT NULL AND author_id <> user_id
  GROUP BY user_id, author_id
),
negatives AS (
  SELECT s.user_id, s.candidate_id, s.sample_ts
  FROM seen s
  LEFT JOIN followed f ON f.user_id = s.user_id AND f.candidate_id = s.candidate_id
  LEFT JOIN already a ON a.user_id = s.user_id AND a.candidate_id = s.candidate_id
  WHERE f.user_id IS NULL AND a.user_id IS NULL
  QUALIFY ROW_NUMBER() OVER (PARTITION BY s.user_id ORDER BY s.sample_ts, s.candidate_id) <= 5
),
samples AS (
  SELECT user_id, candidate_id, sample_ts, 1 AS label FROM followed
  UNION ALL
  SELECT user_id, candidate_id, sample_ts, 0 AS label FROM negatives
)
SELECT
  s.user_id,
  s.candidate_id,
  s.sample_ts,
  s.label,
  COALESCE(pi.interactions, 0) AS pair_interactions,
  COALESCE(pi.likes, 0) AS pair_likes,
  COALESCE(uf.follows_sum_30d, 0) AS u_follows_30d,
  COALESCE(uf.active_days_30d, 0) AS u_active_days_30d,
  COALESCE(cf.posts_created_sum_30d, 0) AS c_posts_30d,
  uf.dt AS feature_dt,
  $run_date AS dt
FROM samples s
LEFT JOIN dws.dws_pair_interaction pi
  ON pi.user_id = s.user_id AND pi.author_id = s.candidate_id AND pi.dt = $prev_date
LEFT JOIN ads.ads_user_features uf ON uf.user_id = s.user_id AND uf.dt = $prev_date
LEFT JOIN ads.ads_user_features cf ON cf.user_id = s.candidate_id AND cf.dt = $prev_date
