-- single-groupby-1-1-12: the highest PM2.5 of ONE sensor (air-00005) in every 5-minute
-- bucket of TWELVE hours (2026-01-01 06:00 to 18:00 UTC): 144 rows
-- (TSBS "single-groupby-1-1-12").
SELECT date_bin(INTERVAL '5 minutes', time) AS bucket, max(pm25) AS max_pm25
FROM air
WHERE sensor = 'air-00005'
  AND time >= '2026-01-01T06:00:00Z' AND time < '2026-01-01T18:00:00Z'
GROUP BY date_bin(INTERVAL '5 minutes', time)
ORDER BY bucket;
