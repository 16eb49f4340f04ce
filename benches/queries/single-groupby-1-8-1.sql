-- single-groupby-1-8-1: the highest PM2.5 over EIGHT sensors (air-00000 to air-00035, the
-- first eight air sensors) in every 5-minute bucket of ONE hour (2026-01-01 08:00 to
-- 09:00 UTC): 12 rows, one per bucket across the eight (TSBS "single-groupby-1-8-1").
SELECT date_bin(INTERVAL '5 minutes', time) AS bucket, max(pm25) AS max_pm25
FROM air
WHERE sensor IN ('air-00000', 'air-00005', 'air-00010', 'air-00015',
                 'air-00020', 'air-00025', 'air-00030', 'air-00035')
  AND time >= '2026-01-01T08:00:00Z' AND time < '2026-01-01T09:00:00Z'
GROUP BY date_bin(INTERVAL '5 minutes', time)
ORDER BY bucket;
