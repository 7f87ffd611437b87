-- The warehouse's metric SQL: every definition of metrics.md, once, as DuckDB views.
--
-- The views read two relations that usersignals.warehouse.db creates from the Parquet files:
-- events_raw (every loaded row, columns of layout.EVENTS_SCHEMA) and deadletter_raw
-- (layout.DEADLETTER_SCHEMA). Everything below is plain SQL over those two names.
-- Days are UTC calendar days of ts (the loader stores them in column day).
-- Ratios are left unrounded here; the report rounds them the way the live path does.

-- The log positions of every copy of an event_id but the first (source_partition,
-- source_offset, batch_index): few rows. Ids are grouped by a 64-bit hash first (cheap); only
-- rows whose hash repeats are compared exactly, so a hash collision costs time, never a count.
CREATE VIEW event_copies AS
WITH repeated AS (
    SELECT hash(event_id) AS h FROM events_raw GROUP BY h HAVING count(*) > 1
)
SELECT source_partition, source_offset, batch_index
FROM events_raw
WHERE hash(event_id) IN (SELECT h FROM repeated)
QUALIFY row_number() OVER (
    PARTITION BY event_id ORDER BY source_partition, source_offset, batch_index
) > 1;

-- Each event_id once: the first copy in log order wins.
CREATE VIEW events AS
SELECT * FROM events_raw
ANTI JOIN event_copies USING (source_partition, source_offset, batch_index);

-- Rollup-shaped relations: every metric below reads only these (and report_days), never
-- events directly, so that a report can put tables merged from per-day rollups of compacted
-- days (usersignals.warehouse.rollup) in their place. user_id is a user key here: the id
-- itself over events, a dense integer in rollups.

-- One row per (user, day) with any valid event: the basis of DAU/WAU/MAU.
CREATE VIEW user_days AS
SELECT DISTINCT user_id, day FROM events;

-- One row per (day, model, user) for events that carry a model: flattery watch's activity.
CREATE VIEW model_user_days AS
SELECT DISTINCT day, model, user_id FROM events WHERE model IS NOT NULL;

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

-- Risk flags counted per (day, user, own model, category, severity), and per session_id for
-- flags without a model of their own (before attribution).
CREATE VIEW flag_cells AS
SELECT day, user_id, model, CASE WHEN model IS NULL THEN session_id END AS session_id,
       category, severity, count(*) AS flags
FROM events
WHERE type = 'risk_flag'
GROUP BY ALL;

-- Model references (docs/attribution.md), per day: the earliest (ts, event_id) message event
-- carrying a model per (user_id, message_id) (kind 'message'), and the earliest session_start
-- or message event carrying a model per (user_id, session_id) (kind 'session').
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

-- The model of a message and of a session: that of the earliest (ts, event_id) reference.
CREATE VIEW message_models AS
SELECT user_id, ref AS message_id, model
FROM model_refs
WHERE kind = 'message'
QUALIFY row_number() OVER (PARTITION BY user_id, ref ORDER BY ts, event_id) = 1;

CREATE VIEW session_models AS
SELECT user_id, ref AS session_id, model
FROM model_refs
WHERE kind = 'session'
QUALIFY row_number() OVER (PARTITION BY user_id, ref ORDER BY ts, event_id) = 1;

-- The vote candidates under their attributed model: the vote's own, else its message's, else
-- its session's (NULL when none is known). Only the references of votes without a model are
-- looked at (the few), not every message's and session's.
CREATE VIEW feedback_votes AS
WITH bare AS (
    SELECT user_id, message_id, session_id FROM feedback_candidates WHERE model IS NULL
),
msg AS (
    SELECT r.user_id, r.ref AS message_id, r.model
    FROM model_refs AS r
    SEMI JOIN bare AS b ON r.user_id = b.user_id AND r.ref = b.message_id
    WHERE r.kind = 'message'
    QUALIFY row_number() OVER (PARTITION BY r.user_id, r.ref ORDER BY r.ts, r.event_id) = 1
),
ses AS (
    SELECT r.user_id, r.ref AS session_id, r.model
    FROM model_refs AS r
    SEMI JOIN bare AS b ON r.user_id = b.user_id AND r.ref = b.session_id
    WHERE r.kind = 'session'
    QUALIFY row_number() OVER (PARTITION BY r.user_id, r.ref ORDER BY r.ts, r.event_id) = 1
)
SELECT f.user_id, f.message_id, f.day, f.ts,
       coalesce(f.model, m.model, s.model) AS model,
       f.rating, f.event_id
FROM feedback_candidates AS f
LEFT JOIN msg AS m
    ON f.model IS NULL AND m.user_id = f.user_id AND m.message_id = f.message_id
LEFT JOIN ses AS s
    ON f.model IS NULL AND s.user_id = f.user_id AND s.session_id = f.session_id;

-- Risk flags counted per (day, user, attributed model, category, severity): a flag's own
-- model, else its session's (NULL when none is known).
CREATE VIEW risk_cells AS
WITH ses AS (
    SELECT r.user_id, r.ref AS session_id, r.model
    FROM model_refs AS r
    SEMI JOIN (SELECT user_id, session_id FROM flag_cells WHERE session_id IS NOT NULL) AS c
        ON r.user_id = c.user_id AND r.ref = c.session_id
    WHERE r.kind = 'session'
    QUALIFY row_number() OVER (PARTITION BY r.user_id, r.ref ORDER BY r.ts, r.event_id) = 1
)
SELECT c.day, c.user_id, coalesce(c.model, s.model) AS model, c.category, c.severity,
       CAST(sum(c.flags) AS BIGINT) AS flags
FROM flag_cells AS c
LEFT JOIN ses AS s ON s.user_id = c.user_id AND s.session_id = c.session_id
GROUP BY ALL;

-- Events per day (days with events only).
CREATE VIEW events_by_day AS
SELECT day, count(*) AS events FROM events GROUP BY day;

-- The first and the last day with events (no row when there are none).
CREATE VIEW data_span AS
SELECT min(day) AS first, max(day) AS last FROM events_by_day HAVING min(day) IS NOT NULL;

-- Every day from the first to the last day with events, gaps included, and whether the day
-- and its trailing windows are complete: the last day with data never is (its events may
-- still arrive), and a window is complete when the day is and the window starts on or after
-- the first day with data (usersignals.metrics.periods states the same rule for the live path).
CREATE VIEW report_days AS
SELECT CAST(d AS DATE) AS day,
       CAST(d AS DATE) < span.last AS complete,
       CAST(d AS DATE) < span.last AND CAST(d AS DATE) - 6 >= span.first AS week_complete,
       CAST(d AS DATE) < span.last AND CAST(d AS DATE) - 29 >= span.first AS month_complete
FROM data_span AS span,
     generate_series(span.first, span.last, INTERVAL 1 DAY) AS g(d);

-- Events per day, with the day's completeness.
CREATE VIEW event_counts AS
SELECT e.day, e.events, r.complete
FROM events_by_day AS e JOIN report_days AS r USING (day);

-- DAU/WAU/MAU, exact. A user active on day a is counted in the window of day d for
-- a <= d < a + width; each active day a of a user covers [a, min(a + width, next active day))
-- so the user's covering segments never overlap, and a running sum of segment starts minus
-- segment ends over the days counts each user at most once per day.
CREATE VIEW active_users AS
WITH segments AS (
    SELECT day,
           coalesce(least(day + 7, next_day), day + 7) AS week_end,
           coalesce(least(day + 30, next_day), day + 30) AS month_end
    FROM (
        SELECT day, lead(day) OVER (PARTITION BY user_id ORDER BY day) AS next_day
        FROM user_days
    )
),
starts AS (SELECT day, count(*) AS n FROM segments GROUP BY day),
week_ends AS (SELECT week_end AS day, count(*) AS n FROM segments GROUP BY week_end),
month_ends AS (SELECT month_end AS day, count(*) AS n FROM segments GROUP BY month_end),
steps AS (
    SELECT r.day, r.complete, r.week_complete, r.month_complete,
           coalesce(s.n, 0) AS dau,
           coalesce(s.n, 0) - coalesce(w.n, 0) AS week_step,
           coalesce(s.n, 0) - coalesce(m.n, 0) AS month_step
    FROM report_days AS r
    LEFT JOIN starts AS s ON s.day = r.day
    LEFT JOIN week_ends AS w ON w.day = r.day
    LEFT JOIN month_ends AS m ON m.day = r.day
)
SELECT day,
       dau,
       CAST(sum(week_step) OVER (ORDER BY day) AS BIGINT) AS wau,
       CAST(sum(month_step) OVER (ORDER BY day) AS BIGINT) AS mau,
       CASE WHEN sum(month_step) OVER (ORDER BY day) = 0 THEN 0.0
            ELSE dau / sum(month_step) OVER (ORDER BY day) END AS stickiness,
       complete,
       week_complete AS wau_complete,
       month_complete AS mau_complete
FROM steps;

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

CREATE VIEW risk_flags_daily AS
SELECT day, category, severity, CAST(sum(flags) AS BIGINT) AS flags,
       count(DISTINCT user_id) AS users
FROM risk_cells
GROUP BY day, category, severity;

-- Distinct users with a high or critical risk flag in [d - 6, d], for every day of the
-- active-user series (same segment counting as active_users).
CREATE VIEW users_at_risk_weekly AS
WITH flagged AS (
    SELECT DISTINCT user_id, day FROM risk_cells
    WHERE severity IN ('high', 'critical')
),
segments AS (
    SELECT day, coalesce(least(day + 7, next_day), day + 7) AS week_end
    FROM (
        SELECT day, lead(day) OVER (PARTITION BY user_id ORDER BY day) AS next_day
        FROM flagged
    )
),
starts AS (SELECT day, count(*) AS n FROM segments GROUP BY day),
ends AS (SELECT week_end AS day, count(*) AS n FROM segments GROUP BY week_end)
SELECT r.day,
       CAST(sum(coalesce(s.n, 0) - coalesce(e.n, 0)) OVER (ORDER BY r.day) AS BIGINT) AS users,
       r.week_complete AS complete
FROM report_days AS r
LEFT JOIN starts AS s ON s.day = r.day
LEFT JOIN ends AS e ON e.day = r.day;

-- Sessions: the events that carry a session_id, per (user_id, session_id). Start and end are
-- the session_start / session_end events when present, else the first / last event seen.
CREATE VIEW sessions AS
SELECT user_id,
       session_id,
       CAST(coalesce(min(ts) FILTER (WHERE type = 'session_start'), min(ts)) AS DATE) AS day,
       coalesce(min(ts) FILTER (WHERE type = 'session_start'), min(ts)) AS started_at,
       coalesce(max(ts) FILTER (WHERE type = 'session_end'), max(ts)) AS ended_at,
       coalesce(
           max(duration_s) FILTER (WHERE type = 'session_end'),
           epoch(coalesce(max(ts) FILTER (WHERE type = 'session_end'), max(ts))
                 - coalesce(min(ts) FILTER (WHERE type = 'session_start'), min(ts)))
       ) AS duration_s,
       count(*) FILTER (WHERE type = 'message') AS messages,
       max_by(model, ts) FILTER (WHERE model IS NOT NULL) AS model,
       max_by(platform, ts) FILTER (WHERE platform IS NOT NULL) AS platform
FROM events
WHERE session_id IS NOT NULL
GROUP BY user_id, session_id;

-- Rejected input, one row per rejection (a range loaded twice is still counted once).
CREATE VIEW deadletter AS
SELECT * FROM deadletter_raw
QUALIFY row_number() OVER (
    PARTITION BY source_topic, source_partition, source_offset, batch_index, reason
    ORDER BY received_at
) = 1;

-- Rejections per reason and day received (the input record's Kafka timestamp, UTC).
CREATE VIEW rejected_daily AS
SELECT CAST(received_at AS DATE) AS day, reason, count(*) AS count
FROM deadletter GROUP BY ALL;

CREATE VIEW rejected AS
SELECT reason, CAST(sum(count) AS BIGINT) AS count FROM rejected_daily GROUP BY reason;
