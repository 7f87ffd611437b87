-- flattery_watch: per model version and ISO week, engagement and wellbeing side by side.
--
-- Reads the rollup-shaped relations of activity.sql and risk.sql (user_days, model_user_days,
-- risk_cells) and feedback_latest of feedback.sql (the latest vote per (user_id, message_id)),
-- so it runs after them. The live form is usersignals.metrics.flattery.
--
-- flattery_counts: one row per (model, week) with active_users > 0; week = ISO week 'YYYY-Www'
-- of the event day. These counts are all the watch is derived from:
--   thumbs_up, thumbs_down  latest votes counted in the week of the vote, under its model
--   active_users            distinct users with an event carrying the model in the week
--   risk_flags              risk_flag events carrying the model in the week
--   users_at_risk           distinct users with a high or critical risk_flag under the model
--   week_users              distinct users with any event in the week
-- The report hands them to usersignals.metrics.flattery.watch_rows, the one definition of the
-- rates' 95 % intervals, the one-sided tests, complete weeks and the flag, exactly as the live
-- report does; nothing here re-derives those.
--
-- flattery_watch: the same counts with the plain ratios, for SQL readers and dashboards:
--   thumbs_up_rate          up / (up + down), NULL without votes
--   active_share            active_users / week_users
--   risk_flags_per_1k       risk_flags * 1000 / active_users
-- Floats are not rounded here; report JSON rounds them with round(x, 6).
-- Distinct users per ISO week (any event), and per model and ISO week (events carrying the
-- model): the two activity counts, as views so that a report can use weekly rollups instead.
CREATE OR REPLACE VIEW week_users AS
SELECT CAST(date_trunc('week', day) AS DATE) AS monday, count(DISTINCT user_id) AS users
FROM user_days
GROUP BY monday;

CREATE OR REPLACE VIEW model_week_users AS
SELECT model, CAST(date_trunc('week', day) AS DATE) AS monday,
       count(DISTINCT user_id) AS active_users
FROM model_user_days
GROUP BY model, monday;

CREATE OR REPLACE VIEW flattery_counts AS
WITH model_weeks AS (
    SELECT
        a.model,
        a.monday,
        a.active_users,
        coalesce(r.risk_flags, 0) AS risk_flags,
        coalesce(r.users_at_risk, 0) AS users_at_risk
    FROM model_week_users AS a
    LEFT JOIN (
        SELECT
            model,
            CAST(date_trunc('week', day) AS DATE) AS monday,
            CAST(sum(flags) AS BIGINT) AS risk_flags,
            count(DISTINCT user_id) FILTER (
                WHERE severity IN ('high', 'critical')
            ) AS users_at_risk
        FROM risk_cells
        WHERE model IS NOT NULL
        GROUP BY model, monday
    ) AS r USING (model, monday)
),
votes AS (
    SELECT
        model,
        CAST(date_trunc('week', day) AS DATE) AS monday,
        count(*) FILTER (WHERE rating = 1) AS thumbs_up,
        count(*) FILTER (WHERE rating = -1) AS thumbs_down
    FROM feedback_latest
    WHERE model IS NOT NULL
    GROUP BY model, monday
)
SELECT
    m.model,
    strftime(m.monday, '%G-W%V') AS week,
    coalesce(v.thumbs_up, 0) AS thumbs_up,
    coalesce(v.thumbs_down, 0) AS thumbs_down,
    m.active_users,
    m.risk_flags,
    m.users_at_risk,
    w.users AS week_users
FROM model_weeks AS m
JOIN week_users AS w USING (monday)
LEFT JOIN votes AS v USING (model, monday)
ORDER BY model, week;

-- complete: the ISO week starts on or after the first day with data and an event exists after
-- its Sunday (report_days' 7-day window flag on that Sunday; no row: the Sunday is after the
-- newest day). The same rule as usersignals.metrics.flattery.is_complete.
CREATE OR REPLACE VIEW flattery_watch AS
SELECT
    c.model,
    c.week,
    c.thumbs_up,
    c.thumbs_down,
    CASE
        WHEN c.thumbs_up + c.thumbs_down > 0
        THEN CAST(c.thumbs_up AS DOUBLE) / (c.thumbs_up + c.thumbs_down)
    END AS thumbs_up_rate,
    c.active_users,
    CAST(c.active_users AS DOUBLE) / c.week_users AS active_share,
    c.risk_flags,
    CAST(c.risk_flags * 1000 AS DOUBLE) / c.active_users AS risk_flags_per_1k,
    c.users_at_risk,
    coalesce(r.week_complete, false) AS complete
FROM flattery_counts AS c
LEFT JOIN report_days AS r
    ON r.day = CAST(strptime(c.week || '-1', '%G-W%V-%u') AS DATE) + 6
ORDER BY c.model, c.week;
