-- double-groupby-1: the average PM2.5 of EVERY air sensor in every hour of one day
-- (2026-01-01 00:00 to 2026-01-02 00:00 UTC): sensors x 24 rows (TSBS "double-groupby-1").
SELECT sensor, date_trunc('hour', time) AS hour, avg(pm25) AS avg_pm25
FROM air
WHERE time >= '2026-01-01T00:00:00Z' AND time < '2026-01-02T00:00:00Z'
GROUP BY sensor, date_trunc('hour', time)
ORDER BY sensor, hour;
