-- view: council_fees
-- tables: council_attendance_records, council_session_records, council_fee_rates, council_fee_policy
-- description: Attendance fees per councillor and month: sittings of held sessions attended (a substitute only when their member was not present), days, the gross at each committee's rate of the day (one fee a day under the same-day rule 'once'), the monthly cap and the fee paid (at most the cap)
WITH att AS (
    SELECT *, row_number() OVER (PARTITION BY session_id, councillor_id ORDER BY version DESC) AS rn
    FROM council_attendance_records
),
status AS (
    SELECT session_id, status,
           row_number() OVER (PARTITION BY session_id ORDER BY version DESC) AS rn
    FROM council_session_records
),
held AS (SELECT session_id FROM status WHERE rn = 1 AND status = 'held'),
present AS (
    SELECT a.session_id, a.committee_id, a.councillor_id, a.substitute_of, a.local_day, a.month
    FROM att a JOIN held h ON h.session_id = a.session_id
    WHERE a.rn = 1 AND a.presence = 'present'
),
sitting AS (
    SELECT p.* FROM present p
    LEFT JOIN present principal
           ON principal.session_id = p.session_id AND principal.councillor_id = p.substitute_of
    WHERE principal.councillor_id IS NULL
),
rates AS (
    SELECT committee_id, valid_from, valid_to, rate_cents,
           row_number() OVER (PARTITION BY committee_id, valid_from ORDER BY version DESC) AS rn
    FROM council_fee_rates
),
rated AS (
    SELECT s.councillor_id, s.month, s.local_day, coalesce(r.rate_cents, 0) AS rate_cents
    FROM sitting s
    LEFT JOIN rates r
           ON r.rn = 1 AND r.committee_id = s.committee_id AND r.valid_from <= s.local_day
          AND (r.valid_to IS NULL OR s.local_day <= r.valid_to)
),
policy AS (
    SELECT same_day_once, monthly_cap_cents
    FROM (SELECT *, row_number() OVER (ORDER BY version DESC) AS rn FROM council_fee_policy)
    WHERE rn = 1
),
per_day AS (
    SELECT councillor_id, month, local_day, count(*) AS sittings,
           max(rate_cents) AS max_rate, sum(rate_cents) AS sum_rate
    FROM rated GROUP BY councillor_id, month, local_day
),
monthly AS (
    SELECT d.councillor_id, d.month, sum(d.sittings) AS sittings, count(*) AS days,
           sum(CASE WHEN p.same_day_once THEN d.max_rate ELSE d.sum_rate END) AS gross_cents,
           max(p.monthly_cap_cents) AS cap_cents
    FROM per_day d CROSS JOIN policy p
    GROUP BY d.councillor_id, d.month
)
SELECT CAST(month || '-01' AS TIMESTAMP) AS time, councillor_id, month, sittings, days,
       gross_cents, cap_cents,
       CASE WHEN gross_cents > cap_cents THEN cap_cents ELSE gross_cents END AS fee_cents,
       gross_cents > cap_cents AS capped
FROM monthly
