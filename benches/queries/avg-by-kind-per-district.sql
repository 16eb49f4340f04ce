-- avg-by-kind-per-district: per kind of sensor and district, on 2026-01-01 (UTC), the
-- sensors, the readings and the average of the kind's main measure (air: PM2.5, noise: LAeq,
-- traffic: vehicles per reading, parking: occupancy, waste: fill level) and of the battery.
SELECT kind, district, count(DISTINCT sensor) AS sensors, count(*) AS readings,
       avg(value) AS avg_value, avg(battery) AS avg_battery
FROM (
    SELECT 'air' AS kind, sensor, district, time, pm25 AS value, battery FROM air
    UNION ALL
    SELECT 'noise' AS kind, sensor, district, time, laeq AS value, battery FROM noise
    UNION ALL
    SELECT 'traffic' AS kind, sensor, district, time, CAST(vehicle_count AS DOUBLE) AS value,
           battery FROM traffic
    UNION ALL
    SELECT 'parking' AS kind, sensor, district, time, occupancy AS value, battery FROM parking
    UNION ALL
    SELECT 'waste' AS kind, sensor, district, time, fill_level AS value, battery FROM waste
) AS readings
WHERE time >= '2026-01-01T00:00:00Z' AND time < '2026-01-02T00:00:00Z'
GROUP BY kind, district
ORDER BY kind, district;
