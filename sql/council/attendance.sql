-- view: council_attendance
-- tables: council_attendance_records, council_session_records
-- description: Per councillor, committee and month, over held sessions: sessions with their attendance recorded, present (of those remote), absent, justified, and the attendance share (present / recorded)
WITH att AS (
    SELECT *, row_number() OVER (PARTITION BY session_id, councillor_id ORDER BY version DESC) AS rn
    FROM council_attendance_records
),
status AS (
    SELECT session_id, status,
           row_number() OVER (PARTITION BY session_id ORDER BY version DESC) AS rn
    FROM council_session_records
),
held AS (SELECT session_id FROM status WHERE rn = 1 AND status = 'held')
SELECT CAST(a.month || '-01' AS TIMESTAMP) AS time, a.month, a.committee_id, a.councillor_id,
       max(a."group") AS "group",
       count(*) AS sessions,
       count(*) FILTER (WHERE a.presence = 'present') AS present,
       count(*) FILTER (WHERE a.presence = 'present' AND a.mode = 'remote') AS remote,
       count(*) FILTER (WHERE a.presence = 'absent') AS absent,
       count(*) FILTER (WHERE a.presence = 'justified') AS justified,
       CAST(count(*) FILTER (WHERE a.presence = 'present') AS DOUBLE) / CAST(count(*) AS DOUBLE) AS attendance
FROM att a JOIN held h ON h.session_id = a.session_id
WHERE a.rn = 1
GROUP BY a.month, a.committee_id, a.councillor_id
