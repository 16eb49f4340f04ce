-- lastpoint: the latest reading of every air-quality sensor (TSBS "lastpoint").
-- All sensors, no time window: the answer is the newest row per sensor, whatever the
-- period simulated. One row per sensor, ordered by sensor.
SELECT sensor, district, time, pm10, pm25, no2, o3, temperature, humidity, battery, status
FROM (
    SELECT sensor, district, time, pm10, pm25, no2, o3, temperature, humidity, battery, status,
           row_number() OVER (PARTITION BY sensor ORDER BY time DESC) AS rn
    FROM air
) AS latest
WHERE rn = 1
ORDER BY sensor;
