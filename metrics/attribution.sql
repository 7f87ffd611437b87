-- Attribution to a model (docs/attribution.md), from history: which model a vote or a risk
-- flag without one counts for. The live form is usersignals.metrics.attribution.

-- Model references (docs/attribution.md), per day: the earliest (ts, event_id) message event
-- carrying a model per (user_id, message_id) (kind 'message'), and the earliest session_start
-- or message event carrying a model per (user_id, session_id) (kind 'session'). One row per
-- (kind, user_id, ref, day): a report merging rollups keeps it so (warehouse/merge.py).
CREATE VIEW model_refs AS
SELECT * FROM (
    SELECT 'message' AS kind, user_id, message_id AS ref, day, ts, event_id, model
    FROM events
    WHERE type = 'message' AND model IS NOT NULL AND message_id IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY user_id, message_id, day ORDER BY ts, event_id) = 1
)
UNION ALL
SELECT * FROM (
    SELECT 'session' AS kind, user_id, session_id AS ref, day, ts, event_id, model
    FROM events
    WHERE type IN ('session_start', 'message') AND model IS NOT NULL AND session_id IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY user_id, session_id, day ORDER BY ts, event_id) = 1
);

-- The model of a message and of a session: that of the earliest (ts, event_id) reference,
-- which is the reference of its first day (a day is a range of ts, and has one reference),
-- so the earliest is found without reading the times and event ids of every reference.
CREATE MACRO first_model(model, day) AS arg_min(model, day);

CREATE VIEW message_models AS
SELECT user_id, ref AS message_id, first_model(model, day) AS model
FROM model_refs
WHERE kind = 'message'
GROUP BY user_id, ref;

CREATE VIEW session_models AS
SELECT user_id, ref AS session_id, first_model(model, day) AS model
FROM model_refs
WHERE kind = 'session'
GROUP BY user_id, ref;
