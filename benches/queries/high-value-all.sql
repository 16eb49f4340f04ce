-- high-value-all: every reading of ANY air sensor with NO2 above 70 ug/m3 during twelve hours
-- (2026-01-01 06:00 to 18:00 UTC), whole rows (TSBS "high-cpu-all").
SELECT time, sensor, district, pm10, pm25, no2, o3, temperature, humidity, battery, status
FROM air
WHERE no2 > 70
  AND time >= '2026-01-01T06:00:00Z' AND time < '2026-01-01T18:00:00Z'
ORDER BY time, sensor;
