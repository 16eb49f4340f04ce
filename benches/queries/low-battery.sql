-- low-battery: the sensors of every kind whose LATEST reading reports a battery below 50 %,
-- lowest first (TSBS IoT "low-fuel"). Latest row per sensor over all five tables.
SELECT kind, sensor, district, time, battery
FROM (
    SELECT 'air' AS kind, sensor, district, time, battery,
           row_number() OVER (PARTITION BY sensor ORDER BY time DESC) AS rn
    FROM air
    UNION ALL
    SELECT 'noise' AS kind, sensor, district, time, battery,
           row_number() OVER (PARTITION BY sensor ORDER BY time DESC) AS rn
    FROM noise
    UNION ALL
    SELECT 'traffic' AS kind, sensor, district, time, battery,
           row_number() OVER (PARTITION BY sensor ORDER BY time DESC) AS rn
    FROM traffic
    UNION ALL
    SELECT 'parking' AS kind, sensor, district, time, battery,
           row_number() OVER (PARTITION BY sensor ORDER BY time DESC) AS rn
    FROM parking
    UNION ALL
    SELECT 'waste' AS kind, sensor, district, time, battery,
           row_number() OVER (PARTITION BY sensor ORDER BY time DESC) AS rn
    FROM waste
) AS latest
WHERE rn = 1 AND battery < 50
ORDER BY battery, sensor;
