-- fault-frequency-by-district: per district, over all five tables and the whole period, the
-- readings, the readings with status 'fault', their share, and how many sensors reported a
-- fault at least once. Every district appears, with zeros where nothing failed.
SELECT district,
       count(*) AS readings,
       sum(CASE WHEN status = 'fault' THEN 1 ELSE 0 END) AS fault_readings,
       CAST(sum(CASE WHEN status = 'fault' THEN 1 ELSE 0 END) AS DOUBLE)
           / CAST(count(*) AS DOUBLE) AS fault_share,
       count(DISTINCT CASE WHEN status = 'fault' THEN sensor END) AS faulty_sensors
FROM (
    SELECT sensor, district, status FROM air
    UNION ALL
    SELECT sensor, district, status FROM noise
    UNION ALL
    SELECT sensor, district, status FROM traffic
    UNION ALL
    SELECT sensor, district, status FROM parking
    UNION ALL
    SELECT sensor, district, status FROM waste
) AS readings
GROUP BY district
ORDER BY district;
