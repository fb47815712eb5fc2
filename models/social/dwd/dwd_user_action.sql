/*
description = "One row per tracked user action of the day, with the action's post / author / followee pulled out of the event properties, the collector's geo enrichment and the user's profile."
materialized = "incremental"
partition_by = "dt"
tags = ["daily", "dwd"]

[[checks]]
type = "not_null"
columns = ["message_id", "user_id", "action", "event_ts"]

[[checks]]
type = "unique"
columns = ["message_id"]

[[checks]]
type = "row_count"
name = "all tracked events of the day"
compare = "SELECT count(*) FROM ods.ods_event WHERE dt = $run_date AND type = 'track' AND TRY_CAST(user_id AS BIGINT) IS NOT NULL"

[[checks]]
type = "accepted_range"
column = "dwell_ms"
min = 0
max = 86400000
severity = "warn"
*/
SELECT
  e.message_id,
  TRY_CAST(e.user_id AS BIGINT) AS user_id,
  e.event_type AS action,
  e.event_ts,
  json_get_int(e.properties, 'post_id') AS post_id,
  json_get_int(e.properties, 'author_id') AS author_id,
  json_get_int(e.properties, 'followee_id') AS followee_id,
  json_get_int(e.properties, 'dwell_ms') AS dwell_ms,
  json_get_str(e.properties, 'feed') AS feed,
  json_get_int(e.properties, 'position') AS feed_position,
  json_get_float(e.properties, 'revenue') AS revenue,
  e.country AS geo_country,
  e.city AS geo_city,
  e.os,
  e.app_version,
  p.age_band,
  p.gender,
  p.country AS profile_country,
  p.platform,
  e.dt
FROM ods.ods_event e
LEFT JOIN ods.ods_profiles p ON p.user_id = TRY_CAST(e.user_id AS BIGINT)
WHERE e.dt = $run_date
  AND e.type = 'track'
  AND TRY_CAST(e.user_id AS BIGINT) IS NOT NULL
