-- Feedback (docs/metrics.md): the latest vote per user and message, thumbs up and down per
-- day and model, from history. The live form is usersignals.metrics.feedback.

-- For each (user_id, message_id, day) the latest vote of that day, with the vote's own model
-- and session_id: the candidates of feedback_latest (the latest vote overall is the latest of
-- these), before attribution.
CREATE VIEW feedback_candidates AS
SELECT user_id, message_id, day, ts, model, rating, event_id, session_id
FROM events
WHERE type = 'feedback'
QUALIFY row_number() OVER (
    PARTITION BY user_id, message_id, day ORDER BY ts DESC, event_id DESC
) = 1;

-- The vote candidates under their attributed model: the vote's own, else its message's, else
-- its session's (NULL when none is known). Only the references of votes without a model are
-- looked at (the few), not every message's and session's.
CREATE VIEW feedback_votes AS
WITH bare AS (
    SELECT user_id, message_id, session_id FROM feedback_candidates WHERE model IS NULL
),
wanted AS (
    SELECT 'message' AS kind, user_id, message_id AS ref FROM bare
    UNION
    SELECT 'session' AS kind, user_id, session_id AS ref FROM bare
),
refs AS MATERIALIZED (  -- one pass over the references for both kinds
    SELECT r.kind, r.user_id, r.ref, first_model(r.model, r.day) AS model
    FROM model_refs AS r
    SEMI JOIN wanted AS w ON r.kind = w.kind AND r.user_id = w.user_id AND r.ref = w.ref
    GROUP BY r.kind, r.user_id, r.ref
)
SELECT f.user_id, f.message_id, f.day, f.ts,
       coalesce(f.model, m.model, s.model) AS model,
       f.rating, f.event_id
FROM feedback_candidates AS f
LEFT JOIN refs AS m
    ON f.model IS NULL AND m.kind = 'message' AND m.user_id = f.user_id
    AND m.ref = f.message_id
LEFT JOIN refs AS s
    ON f.model IS NULL AND s.kind = 'session' AND s.user_id = f.user_id
    AND s.ref = f.session_id;

-- For each (user_id, message_id) the vote with the latest ts (ties: the greater event_id),
-- on the day of that vote and under its model. A latest vote of 0 (withdrawn) stays here
-- and counts nowhere below.
CREATE VIEW feedback_latest AS
SELECT user_id, message_id, day, ts, model, rating, event_id
FROM feedback_votes
QUALIFY row_number() OVER (
    PARTITION BY user_id, message_id ORDER BY ts DESC, event_id DESC
) = 1;

CREATE VIEW feedback_by_model AS
SELECT day,
       model,
       count(*) FILTER (WHERE rating = 1) AS thumbs_up,
       count(*) FILTER (WHERE rating = -1) AS thumbs_down,
       CAST(count(*) FILTER (WHERE rating = 1) AS DOUBLE) / count(*) AS thumbs_up_rate
FROM feedback_latest
WHERE rating IN (1, -1)
GROUP BY day, model;
