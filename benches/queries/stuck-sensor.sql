-- stuck-sensor: 10-minute windows of 2026-01-01 (UTC) in which an air sensor's temperature
-- did not move (sample standard deviation below 0.001 over at least 5 readings): a sensor
-- repeating its last values while reporting status 'ok'. Values have two decimals and the
-- temperature walks by about 0.1 a minute, so a live sensor's deviation is at least 0.003.
SELECT sensor, date_bin(INTERVAL '10 minutes', time) AS window_start,
       count(temperature) AS readings, min(temperature) AS temperature,
       stddev_samp(temperature) AS stddev_temperature
FROM air
WHERE time >= '2026-01-01T00:00:00Z' AND time < '2026-01-02T00:00:00Z'
GROUP BY sensor, date_bin(INTERVAL '10 minutes', time)
HAVING count(temperature) >= 5 AND stddev_samp(temperature) < 0.001
ORDER BY sensor, window_start;
