-- view: council_acts
-- tables: council_act_records, council_act_steps
-- description: Every act with its current status (the last step of its iter), its number, kind, initiative, first signer and group, how many steps it took, and the days since its last step (stale: an open act over 60 days without one)
WITH rec AS (
    SELECT *, row_number() OVER (PARTITION BY act_id ORDER BY time DESC) AS rn
    FROM council_act_records
),
ranked AS (
    SELECT act_id, time, to_status, body, committee_id, resolution_number,
           row_number() OVER (PARTITION BY act_id ORDER BY version DESC) AS rn,
           count(*) OVER (PARTITION BY act_id) AS steps
    FROM council_act_steps
),
last_step AS (SELECT * FROM ranked WHERE rn = 1),
decided AS (
    SELECT act_id,
           max(time) FILTER (WHERE to_status = 'FILED') AS filed_at,
           max(time) FILTER (WHERE to_status = 'APPROVED') AS approved_at,
           max(time) FILTER (WHERE to_status = 'PUBLISHED') AS published_at,
           max(time) FILTER (WHERE to_status = 'ENFORCEABLE') AS enforceable_at,
           max(resolution_number) AS resolution_number
    FROM council_act_steps GROUP BY act_id
),
acts AS (
    SELECT r.act_id, r.kind, r.number, r.year, r.subject, r.initiative, r.first_signer,
           r."group", r.amends, r.signatures, r.drafted_at,
           coalesce(s.to_status, 'DRAFT') AS status,
           coalesce(s.time, r.drafted_at) AS time,
           s.body AS last_body, s.committee_id AS last_committee,
           coalesce(s.steps, 0) AS steps,
           d.filed_at, d.approved_at, d.published_at, d.enforceable_at, d.resolution_number
    FROM rec r
    LEFT JOIN last_step s ON s.act_id = r.act_id
    LEFT JOIN decided d ON d.act_id = r.act_id
    WHERE r.rn = 1
)
SELECT *,
       CAST(CAST(now() AS BIGINT) - CAST(time AS BIGINT) AS DOUBLE) / 86400000000.0 AS days_since_step,
       status IN ('ENFORCEABLE', 'REJECTED', 'WITHDRAWN', 'LAPSED', 'ANSWERED')
           OR (status = 'APPROVED' AND kind <> 'proposal') AS closed,
       NOT (status IN ('ENFORCEABLE', 'REJECTED', 'WITHDRAWN', 'LAPSED', 'ANSWERED')
           OR (status = 'APPROVED' AND kind <> 'proposal'))
           AND CAST(now() AS BIGINT) - CAST(time AS BIGINT) > 60 * 86400000000 AS stale
FROM acts
