-- single-groupby-1-1-1: the highest PM2.5 of ONE sensor (air-00005) in every 5-minute
-- bucket of ONE hour (2026-01-01 08:00 to 09:00 UTC): 12 rows (TSBS "single-groupby-1-1-1").
-- DuckDB variant: time_bucket(INTERVAL ..., time) for DataFusion's date_bin (both align
-- buckets to whole multiples of the width in UTC; the check runs with TimeZone 'UTC').
SELECT time_bucket(INTERVAL '5 minutes', time) AS bucket, max(pm25) AS max_pm25
FROM air
WHERE sensor = 'air-00005'
  AND time >= '2026-01-01T08:00:00Z' AND time < '2026-01-01T09:00:00Z'
GROUP BY time_bucket(INTERVAL '5 minutes', time)
ORDER BY bucket;
