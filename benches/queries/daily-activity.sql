-- daily-activity: per day, district and kind of sensor, how many sensors reported and how
-- many sensor-hours were active (at least one reading with status 'ok' in the hour), over
-- the whole period (TSBS IoT "daily-activity").
SELECT date_trunc('day', hour) AS day, district, kind,
       count(DISTINCT sensor) AS sensors,
       sum(CASE WHEN ok_readings > 0 THEN 1 ELSE 0 END) AS active_sensor_hours
FROM (
    SELECT kind, sensor, district, date_trunc('hour', time) AS hour,
           sum(CASE WHEN status = 'ok' THEN 1 ELSE 0 END) AS ok_readings
    FROM (
        SELECT 'air' AS kind, sensor, district, time, status FROM air
        UNION ALL
        SELECT 'noise' AS kind, sensor, district, time, status FROM noise
        UNION ALL
        SELECT 'traffic' AS kind, sensor, district, time, status FROM traffic
        UNION ALL
        SELECT 'parking' AS kind, sensor, district, time, status FROM parking
        UNION ALL
        SELECT 'waste' AS kind, sensor, district, time, status FROM waste
    ) AS readings
    GROUP BY kind, sensor, district, date_trunc('hour', time)
) AS hours
GROUP BY date_trunc('day', hour), district, kind
ORDER BY day, district, kind;
