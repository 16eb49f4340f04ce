-- groupby-orderby-limit: the highest PM2.5 over all air sensors per minute, for the last five
-- minutes before 2026-01-01 18:00 UTC (a GROUP BY whose ORDER BY ... LIMIT keeps only the
-- newest groups; TSBS "groupby-orderby-limit").
SELECT date_trunc('minute', time) AS minute, max(pm25) AS max_pm25
FROM air
WHERE time < '2026-01-01T18:00:00Z'
GROUP BY date_trunc('minute', time)
ORDER BY minute DESC
LIMIT 5;
