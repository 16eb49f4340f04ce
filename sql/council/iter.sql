-- view: council_iter
-- tables: council_act_records, council_act_steps
-- description: One row per step of every act's iter, in order, with the days since the act's previous step (or since it was drafted, for its first step)
WITH drafted AS (
    SELECT act_id, min(drafted_at) AS drafted_at FROM council_act_records GROUP BY act_id
)
SELECT s.time, s.act_id, s.kind, s.version AS step, s.from_status, s.to_status, s.body,
       s.committee_id, s.session_id, s.item, s.role, s.resolution_number, s.note,
       CAST(CAST(s.time AS BIGINT)
            - CAST(coalesce(lag(s.time) OVER (PARTITION BY s.act_id ORDER BY s.version), d.drafted_at) AS BIGINT)
            AS DOUBLE) / 86400000000.0 AS days_since_previous
FROM council_act_steps s
LEFT JOIN drafted d ON d.act_id = s.act_id
