/*
description = "The follow graph as a slowly-changing dimension: one row per follow period, valid_from → valid_to (NULL while it lasts). Periods come from follow / unfollow events; follows that predate the events (the initial graph) start at their created_at."
materialized = "table"
tags = ["dwd", "scd"]

[[checks]]
type = "unique"
columns = ["follower_id", "followee_id", "valid_from"]

[[checks]]
type = "not_null"
columns = ["follower_id", "followee_id", "valid_from"]

[[checks]]
type = "consistency"
name = "current periods match the live follow table"
left = "SELECT count(*) FROM dwd.dwd_user_relation WHERE is_current"
right = "SELECT count(*) FROM ods.ods_follows"
tolerance = 0.05
severity = "warn"
*/
WITH ev AS (
  SELECT user_id AS follower_id, followee_id, event_ts, action
  FROM dwd.dwd_user_action
  WHERE action IN ('User Followed', 'User Unfollowed')
    AND followee_id IS NOT NULL
    AND dt <= $run_date
),
firsts AS (
  SELECT
    follower_id,
    followee_id,
    first_value(action ORDER BY event_ts) AS first_action
  FROM ev
  GROUP BY follower_id, followee_id
),
-- Follows older than the events: rows of the follow table with no events, and pairs whose
-- first event is an unfollow (their start is the row's created_at, or unknown: 1970).
initial AS (
  SELECT f.follower_id, f.followee_id, f.created_at AS event_ts, 'User Followed' AS action
  FROM ods.ods_follows f
  LEFT JOIN firsts x ON x.follower_id = f.follower_id AND x.followee_id = f.followee_id
  WHERE x.follower_id IS NULL
  UNION ALL
  SELECT
    x.follower_id,
    x.followee_id,
    COALESCE(f.created_at, CAST('1970-01-01 00:00:00' AS TIMESTAMP)) AS event_ts,
    'User Followed' AS action
  FROM firsts x
  LEFT JOIN ods.ods_follows f ON f.follower_id = x.follower_id AND f.followee_id = x.followee_id
  WHERE x.first_action = 'User Unfollowed'
),
periods AS (
  SELECT
    follower_id,
    followee_id,
    event_ts,
    action,
    LEAD(event_ts) OVER (PARTITION BY follower_id, followee_id ORDER BY event_ts) AS next_ts
  FROM (SELECT * FROM ev UNION ALL SELECT * FROM initial) x
)
SELECT
  follower_id,
  followee_id,
  event_ts AS valid_from,
  next_ts AS valid_to,
  next_ts IS NULL AS is_current
FROM periods
WHERE action = 'User Followed'
