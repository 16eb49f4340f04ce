-- view: council_group_dissent
-- tables: council_ballots
-- description: Per councillor, over the roll calls: how many they voted in and how many times against the majority of their own group in the same vote (a tie in the group counts the first option in the order abstained, no, yes)
WITH majority AS (
    SELECT session_id, vote, "group", ballot,
           row_number() OVER (PARTITION BY session_id, vote, "group" ORDER BY count(*) DESC, ballot) AS rn
    FROM council_ballots
    GROUP BY session_id, vote, "group", ballot
)
SELECT b.councillor_id, b."group",
       count(*) AS roll_calls,
       count(*) FILTER (WHERE b.ballot <> m.ballot) AS against_group
FROM council_ballots b
JOIN majority m
  ON m.session_id = b.session_id AND m.vote = b.vote AND m."group" = b."group" AND m.rn = 1
GROUP BY b.councillor_id, b."group"
