-- view: council_sessions
-- tables: council_session_records, council_agenda_items, council_attendance_records, council_votes
-- description: Every session with its current status (scheduled, convened, held, cancelled), its number in the committee's year, calls and actual times, duration in minutes, agenda items (late ones apart), members present, votes and votes without quorum
WITH ranked AS (
    SELECT *, row_number() OVER (PARTITION BY session_id ORDER BY version DESC) AS rn
    FROM council_session_records
),
items AS (
    SELECT session_id, count(DISTINCT item) AS items,
           count(DISTINCT item) FILTER (WHERE late) AS late_items
    FROM council_agenda_items GROUP BY session_id
),
att AS (
    SELECT session_id, councillor_id, presence,
           row_number() OVER (PARTITION BY session_id, councillor_id ORDER BY version DESC) AS rn
    FROM council_attendance_records
),
present AS (
    SELECT session_id, count(*) FILTER (WHERE presence = 'present') AS present
    FROM att WHERE rn = 1 GROUP BY session_id
),
votes AS (
    SELECT session_id, count(*) AS votes,
           count(*) FILTER (WHERE NOT quorum_reached) AS votes_without_quorum
    FROM council_votes GROUP BY session_id
)
SELECT r.first_call AS time, r.session_id, r.committee_id, r.status, r.year, r.number,
       r.first_call, r.started, r.ended,
       CAST(CAST(r.ended AS BIGINT) - CAST(r.started AS BIGINT) AS DOUBLE) / 60000000.0 AS duration_min,
       r.public, r.online, r.local_day, r.month,
       coalesce(i.items, 0) AS items, coalesce(i.late_items, 0) AS late_items,
       coalesce(p.present, 0) AS present,
       coalesce(v.votes, 0) AS votes, coalesce(v.votes_without_quorum, 0) AS votes_without_quorum
FROM ranked r
LEFT JOIN items i ON i.session_id = r.session_id
LEFT JOIN present p ON p.session_id = r.session_id
LEFT JOIN votes v ON v.session_id = r.session_id
WHERE r.rn = 1
