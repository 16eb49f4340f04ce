-- view: council_stats
-- tables: council_session_records, council_votes, council_act_steps
-- description: Per committee and year: sessions held and cancelled, their average duration in minutes, held sessions with a vote without quorum, votes, and the acts it examined with its outcomes (favourable, with amendments, unfavourable, postponed, returned, sent on)
WITH ranked AS (
    SELECT *, row_number() OVER (PARTITION BY session_id ORDER BY version DESC) AS rn
    FROM council_session_records
),
sessions AS (
    SELECT committee_id, year,
           count(*) FILTER (WHERE status = 'held') AS sessions_held,
           count(*) FILTER (WHERE status = 'cancelled') AS sessions_cancelled,
           avg(CAST(CAST(ended AS BIGINT) - CAST(started AS BIGINT) AS DOUBLE) / 60000000.0)
               FILTER (WHERE status = 'held') AS mean_duration_min
    FROM ranked WHERE rn = 1 GROUP BY committee_id, year
),
votes AS (
    SELECT v.committee_id, r.year, count(*) AS votes,
           count(DISTINCT v.session_id) FILTER (WHERE NOT v.quorum_reached) AS sessions_without_quorum
    FROM council_votes v JOIN ranked r ON r.session_id = v.session_id AND r.rn = 1
    GROUP BY v.committee_id, r.year
),
outcomes AS (
    SELECT committee_id, CAST(date_part('year', time) AS BIGINT) AS year,
           count(DISTINCT act_id) AS acts_examined,
           count(*) FILTER (WHERE to_status = 'FAVOURABLE') AS favourable,
           count(*) FILTER (WHERE to_status = 'FAVOURABLE_WITH_AMENDMENTS') AS favourable_with_amendments,
           count(*) FILTER (WHERE to_status = 'UNFAVOURABLE') AS unfavourable,
           count(*) FILTER (WHERE to_status = 'POSTPONED') AS postponed,
           count(*) FILTER (WHERE to_status = 'RETURNED_TO_OFFICE') AS returned_to_office,
           count(*) FILTER (WHERE to_status = 'SENT_TO_OTHER_COMMITTEE') AS sent_on
    FROM council_act_steps
    WHERE to_status IN ('FAVOURABLE', 'FAVOURABLE_WITH_AMENDMENTS', 'UNFAVOURABLE', 'POSTPONED',
                        'RETURNED_TO_OFFICE', 'SENT_TO_OTHER_COMMITTEE')
    GROUP BY committee_id, CAST(date_part('year', time) AS BIGINT)
)
SELECT CAST(CAST(s.year AS VARCHAR) || '-01-01' AS TIMESTAMP) AS time, s.committee_id, s.year,
       s.sessions_held, s.sessions_cancelled, s.mean_duration_min,
       coalesce(v.sessions_without_quorum, 0) AS sessions_without_quorum,
       coalesce(v.votes, 0) AS votes,
       coalesce(o.acts_examined, 0) AS acts_examined,
       coalesce(o.favourable, 0) AS favourable,
       coalesce(o.favourable_with_amendments, 0) AS favourable_with_amendments,
       coalesce(o.unfavourable, 0) AS unfavourable,
       coalesce(o.postponed, 0) AS postponed,
       coalesce(o.returned_to_office, 0) AS returned_to_office,
       coalesce(o.sent_on, 0) AS sent_on
FROM sessions s
LEFT JOIN votes v ON v.committee_id = s.committee_id AND v.year = s.year
LEFT JOIN outcomes o ON o.committee_id = s.committee_id AND o.year = s.year
