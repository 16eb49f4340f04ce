-- single-groupby-1-1-12: the highest PM2.5 of ONE sensor (air-00005) in every 5-minute
-- bucket of TWELVE hours (2026-01-01 06:00 to 18:00 UTC): 144 rows
-- (TSBS "single-groupby-1-1-12").
-- DuckDB variant: time_bucket(INTERVAL ..., time) for DataFusion's date_bin (both align
-- buckets to whole multiples of the width in UTC; the check runs with TimeZone 'UTC').
SELECT time_bucket(INTERVAL '5 minutes', time) AS bucket, max(pm25) AS max_pm25
FROM air
WHERE sensor = 'air-00005'
  AND time >= '2026-01-01T06:00:00Z' AND time < '2026-01-01T18:00:00Z'
GROUP BY time_bucket(INTERVAL '5 minutes', time)
ORDER BY bucket;
