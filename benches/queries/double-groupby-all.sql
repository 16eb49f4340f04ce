-- double-groupby-all: the averages of ALL six air-quality fields of every air sensor in every
-- hour of one day (2026-01-01 00:00 to 2026-01-02 00:00 UTC): sensors x 24 rows
-- (TSBS "double-groupby-all").
SELECT sensor, date_trunc('hour', time) AS hour,
       avg(pm10) AS avg_pm10, avg(pm25) AS avg_pm25, avg(no2) AS avg_no2, avg(o3) AS avg_o3,
       avg(temperature) AS avg_temperature, avg(humidity) AS avg_humidity
FROM air
WHERE time >= '2026-01-01T00:00:00Z' AND time < '2026-01-02T00:00:00Z'
GROUP BY sensor, date_trunc('hour', time)
ORDER BY sensor, hour;
